#!/usr/bin/env bash
# The README's demo: on the embedded default (a local directory store + SQLite catalog), package a dataset
# of a few thousand small files, mount it lazily as a Valohai input, read it back through FUSE and check
# every byte. Everything lives under ./.vhfs-demo (recreated on each run); nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DEMO=$PWD/.vhfs-demo
export VHFS_HOME=$DEMO/home
vhfs() { node "$OLDPWD/bin/vhfs.js" "$@"; }
OLDPWD=$PWD
ROOT=$DEMO/valohai

cleanup() { vhfs unmount --root "$ROOT" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
rm -rf "$DEMO"
mkdir -p "$DEMO/src"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. make a dataset: 3 classes x 1,000 small 'images' (random bytes, 1-16 KiB)"
node -e '
const fs = require("fs"), crypto = require("crypto");
for (const c of ["cats", "dogs", "birds"]) {
  fs.mkdirSync(`${process.argv[1]}/${c}`, { recursive: true });
  for (let i = 0; i < 1000; i++) fs.writeFileSync(`${process.argv[1]}/${c}/${c}_${String(i).padStart(5, "0")}.jpg`, crypto.randomBytes(1024 + (i * 7919) % 15360));
}' "$DEMO/src"
du -sh "$DEMO/src"

step "2. create dataset version demo-images/v1, packaged into .vhpkgzip, alias 'latest'"
vhfs dataset create demo-images/v1 "$DEMO/src" --package --alias latest
vhfs dataset ls demo-images
vhfs package inspect dataset://demo-images/v1

step "3. mount it as input 'images' at $ROOT/inputs (resolved lazily, on first use), and $ROOT/outputs"
# The job's environment, as Valohai sets it: the outputs carry this execution id; packaging is enabled.
VH_EXECUTION_ID=demo-exec-1 VH_ENABLE_DATASET_VERSION_PACKAGING=1 \
  vhfs mount --root "$ROOT" --input images=dataset://demo-images/latest --wait
ls "$ROOT/inputs/images"
echo "files: $(find "$ROOT/inputs/images" -type f | wc -l)"
ls -l "$ROOT/inputs/images/cats" | head -4 || true

step "4. read every file through FUSE and compare with the source"
(cd "$DEMO/src" && find . -type f | sort | xargs sha256sum) > "$DEMO/src.sha256"
(cd "$ROOT/inputs/images" && find . -type f | sort | xargs sha256sum) > "$DEMO/mounted.sha256"
if cmp -s "$DEMO/src.sha256" "$DEMO/mounted.sha256"; then echo "all $(wc -l < "$DEMO/src.sha256") files byte-identical"; else echo "MISMATCH"; exit 1; fi

step "5. what a job sees: $ROOT/config/inputs.json (first entry)"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); f=d["images"]["files"]; print(len(f), "files listed"); print(json.dumps(f[0], indent=2))' "$ROOT/config/inputs.json"

step "6. inputs are immutable"
touch "$ROOT/inputs/images/new.txt" 2>&1 || true

step "7. the job writes outputs: a model (with an alias), a checkpoint uploaded live, 300 predictions forming a packaged dataset version"
python3 - "$ROOT" <<'PY'
import json, os, sys
root = sys.argv[1]; out = os.path.join(root, "outputs")
with open(os.path.join(out, "model.pkl"), "wb") as f: f.write(os.urandom(200_000))
json.dump({"valohai.alias": "demo-best-model", "valohai.tags": ["demo"], "accuracy": 0.93}, open(os.path.join(out, "model.pkl.metadata.json"), "w"))
with open(os.path.join(out, "checkpoint.pt"), "wb") as f: f.write(os.urandom(100_000))
os.chmod(os.path.join(out, "checkpoint.pt"), 0o444)   # live upload: uploaded now, gone from outputs/
os.makedirs(os.path.join(out, "predictions"))
with open(os.path.join(out, "valohai.metadata.jsonl"), "w") as meta:
    for cls in ("cats", "dogs", "birds"):
        for name in sorted(os.listdir(os.path.join(root, "inputs", "images", cls)))[:100]:
            p = "predictions/%s.csv" % name
            with open(os.path.join(out, p), "w") as f: f.write("%s,%s\n" % (name, cls))
            meta.write(json.dumps({"file": p, "metadata": {"valohai.dataset-versions": [{"uri": "dataset://demo-predictions/v1", "packaging": True, "targeting_aliases": ["latest"]}]}}) + "\n")
PY
ls "$ROOT/outputs"
vhfs outputs status --root "$ROOT" --limit 3

step "8. unmount: the outputs are finalized (uploaded, metadata applied, version packaged) first"
vhfs unmount --root "$ROOT"
trap - EXIT
vhfs outputs status --root "$ROOT" --limit 4
vhfs dataset ls demo-predictions
vhfs ls dataset://demo-predictions/latest predictions | sed -n 1,3p
echo "datum://demo-best-model: $(vhfs cat datum://demo-best-model | wc -c) bytes (the model, by its alias)"
echo
echo "demo complete"
