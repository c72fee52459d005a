/**
 * What a job does with its inputs, as Python (valohai-utils reads inputs.json the same way): shared by the
 * host tests of `vhfs mount --allow-other --job-root` (test/fuse/sharing.test.ts) and the container tests
 * (test/container/), where the script runs inside a container as another uid.
 */

/**
 * Read `inputs.json` (argv[1]) and every file it lists, by the path it gives, checking each against its
 * sha256. argv[2], argv[3] (optional): a path prefix to replace by another, to follow job paths from the host.
 * Prints {"uid", "files", "bytes", "bad": [paths whose bytes differ], "errors": [[path, errno name]], "input_errors"}.
 */
export const PY_VERIFY_INPUTS_JSON = String.raw`
import errno, hashlib, json, os, sys
spec = json.load(open(sys.argv[1]))
src, dst = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("", "")
out = {"uid": os.getuid(), "files": 0, "bytes": 0, "bad": [], "errors": [], "input_errors": {}}
for name, inp in spec.items():
    if "error" in inp:
        out["input_errors"][name] = inp["error"]
    for f in inp["files"]:
        p = f["path"]
        if src and p.startswith(src):
            p = dst + p[len(src):]
        try:
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                while True:
                    b = fh.read(1 << 20)
                    if not b:
                        break
                    out["bytes"] += len(b)
                    h.update(b)
            out["files"] += 1
            if h.hexdigest() != f["checksums"]["sha256"] or os.path.getsize(p) != f["size"]:
                out["bad"].append(f["path"])
        except OSError as e:
            out["errors"].append([f["path"], errno.errorcode.get(e.errno, str(e.errno))])
out["errors"] = out["errors"][:10]
print(json.dumps(out))
`;

export interface VerifyResult {
  uid: number;
  files: number;
  bytes: number;
  bad: string[];
  errors: Array<[string, string]>;
  input_errors: Record<string, string>;
}
