/**
 * The in-memory store the tests below the mount use must behave like every real backend: it runs the
 * same contract suite (test/store/contract.ts) as LocalDirStore and the cloud stores.
 */
import test from 'ava';
import { MemoryStore } from '../helpers/memory-store.js';
import { storeContract } from './contract.js';

storeContract(test, 'MemoryStore', async () => ({ store: new MemoryStore(), cleanup: async () => {} }));
