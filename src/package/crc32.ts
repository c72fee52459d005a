/**
 * CRC-32 (the zip/IEEE polynomial) over a stream of chunks. Node's `zlib.crc32` runs zlib's native
 * implementation (~3 GB/s here), far faster than a JS table loop, and takes the previous value so a
 * member's CRC is computed while its bytes stream through without buffering them.
 */
import { crc32 as zlibCrc32 } from 'node:zlib';

/** CRC-32 of `chunk` continuing from `previous` (0 for the first chunk). */
export function crc32(chunk: Uint8Array, previous = 0): number {
  return zlibCrc32(chunk, previous);
}
