/**
 * One error type for everything a user can cause or hit. The `code` is stable and machine-readable
 * (scripts and `--json` output rely on it); the message is one line naming the file, URI or entry at
 * fault. `exitCode` is what the CLI exits with, so "not found" and "bad input" can be told apart.
 */
export type VhfsErrorCode =
  | 'BAD_URI'          // a URI that cannot be parsed or has an unknown scheme
  | 'BAD_ARGUMENT'     // a CLI argument or option that makes no sense
  | 'NOT_FOUND'        // datum, dataset, version, alias, object or path does not exist
  | 'ALIAS_DANGLING'   // an alias that points to something that does not exist
  | 'CONFLICT'         // create-if-absent on something that exists, or a lost compare-and-swap
  | 'BAD_PACKAGE'      // a .vhpkgzip (or zip) that is truncated, corrupt or unsafe
  | 'UNSAFE_PATH'      // an entry or file name that is absolute, has `..`, NUL, or repeats
  | 'INTEGRITY'        // bytes whose hash or CRC does not match what was recorded
  | 'STORE'            // the object store failed (I/O, network, permissions)
  | 'TIMEOUT'          // an operation did not finish within its deadline
  | 'UNSUPPORTED';     // a feature or URI kind this build cannot serve (yet)

const EXIT_CODES: Record<VhfsErrorCode, number> = {
  BAD_URI: 2,
  BAD_ARGUMENT: 2,
  NOT_FOUND: 3,
  ALIAS_DANGLING: 3,
  CONFLICT: 4,
  BAD_PACKAGE: 5,
  UNSAFE_PATH: 5,
  INTEGRITY: 5,
  STORE: 6,
  TIMEOUT: 6,
  UNSUPPORTED: 7,
};

export class VhfsError extends Error {
  readonly code: VhfsErrorCode;
  constructor(code: VhfsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VhfsError';
    this.code = code;
  }
  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

export function isVhfsError(err: unknown, code?: VhfsErrorCode): err is VhfsError {
  return err instanceof VhfsError && (code === undefined || err.code === code);
}

/** The one-line text a user sees for any thrown value. */
export function describeError(err: unknown): string {
  if (err instanceof VhfsError) return err.message;
  if (err instanceof Error) return err.message.split('\n')[0];
  return String(err);
}
