/** Public surface of the .vhpkgzip library: streaming writer, tail-and-CD reader, names, sources. */
export { crc32 } from './crc32.js';
export { writePackage } from './writer.js';
export type { EntryBody, PackageEntry, PackagePart, WritePackageOptions, WrittenEntry } from './writer.js';
export { readPackageListing, verifyMember } from './reader.js';
export type { PackageListing } from './reader.js';
export { packagePartName, partFileName, parsePackagePartName, PACKAGE_EXTENSION } from './naming.js';
export { bufferSource, fileSource, storeSource } from './source.js';
export type { FileSource, RandomAccessSource } from './source.js';
export { DATA_ALIGNMENT, EXTRA_ALIGNMENT, EXTRA_VHFS } from './format.js';
