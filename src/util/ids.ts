/**
 * Datum ids: UUIDv7 (RFC 9562), time-ordered like Valohai's.
 *
 * Layout: 48-bit Unix milliseconds | version 7 | 12-bit `rand_a` | variant 0b10 | 62 random bits.
 * Within one process ids are strictly increasing: `rand_a` is used as a counter inside one millisecond
 * (RFC 9562 §6.2 method 1), seeded randomly with headroom; when it would overflow, the timestamp is
 * advanced by one millisecond instead (clock drift of < 1 ms per 2048 ids is harmless). Across processes
 * ids are ordered by time only, and the 62 crypto-random bits keep them unique.
 */
import { randomBytes } from 'node:crypto';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let lastMs = -1;
let counter = 0;

/** A new UUIDv7 string, lower-case, greater than every id this process returned before. */
export function uuidv7(nowMs: number = Date.now()): string {
  if (nowMs > lastMs) {
    lastMs = nowMs;
    counter = randomBytes(2).readUInt16BE(0) & 0x7ff; // start in the lower half: room to count up
  } else if (++counter > 0xfff) {
    lastMs += 1;
    counter = 0;
  }
  const b = randomBytes(16);
  b.writeUIntBE(lastMs, 0, 6);
  b[6] = 0x70 | (counter >> 8);
  b[7] = counter & 0xff;
  b[8] = 0x80 | (b[8] & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Any RFC 9562 UUID in canonical 8-4-4-4-12 hex form (datum ids from other tools may be v4). */
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}
