/** The catalog's public surface: `Catalog` plus record types and store-layout helpers. */
export * from './types.js';
export {
  Catalog,
  type CatalogOptions,
  type DatumBody,
  type DatumMeta,
  type DatumQuery,
  type SyncProgress,
  type SyncResult,
  type VersionInput,
  type VersionSummary,
} from './catalog.js';
export { keys as storeKeys, NAME_RE, parseKey, batchIdOf, DATUMS_PER_BATCH } from './store-records.js';
export { DatumWriter } from './datum-writer.js';
