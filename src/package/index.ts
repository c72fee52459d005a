/** Public surface of the .vhpkgzip library: streaming writer, tail-and-CD reader, verification, names, sources. */
export { crc32 } from './crc32.js';
export { writePackage } from './writer.js';
export type { EntryBody, PackageEntry, PackagePart, WritePackageOptions } from './writer.js';
export { readPackageListing } from './reader.js';
export type { ChunkTableLocation, PackageListing } from './reader.js';
export { checkChunkTable, loadChunkTable, readChunkTable, verifyMember, verifyPackage } from './verify.js';
export { CHUNK_TABLE_NAME } from './entry-names.js';
export { packagePartName, partFileName, parsePackagePartName, PACKAGE_EXTENSION } from './part-names.js';
export { bufferSource, fileSource, storeSource, withFileSource } from './source.js';
export type { FileSource, RandomAccessSource } from './source.js';
export { DATA_ALIGNMENT, EXTRA_ALIGNMENT, EXTRA_VHFS } from './format.js';
