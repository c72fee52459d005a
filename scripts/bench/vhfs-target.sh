#!/usr/bin/env bash
# vhfs as a target of peers.ts (VHFS_BENCH_MOUNT_CMD contract: mount, print "ready …", stay in the
# foreground, unmount on SIGTERM).
#
# The harness hands every target the same tree (and a zip of it). vhfs serves dataset versions, so the tree
# becomes a packaged version once (datums + one .vhpkgzip, in a vhfs home beside the harness's data), and
# each mount serves `dataset://bench/v1` from that package. The persisted index is deleted before every
# mount, so mount→ls includes reading the package's tail and central directory, as fuse-zip must.
# VHFS_BENCH_WARM=1 keeps it (a second mount on the same host).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
data=$(dirname "$VHFS_BENCH_ZIP")
tree=$data/tree
home=$data/vhfs-home
vhfs() { node "$repo/bin/vhfs.js" --home "$home" "$@"; }

if [ ! -f "$home/.bench-ready" ] || [ "$tree" -nt "$home/.bench-ready" ]; then
  rm -rf "$home"
  echo "vhfs-target: packaging $tree as dataset://bench/v1 (once)" >&2
  vhfs --quiet dataset create bench/v1 "$tree" --package >&2
  touch "$home/.bench-ready"
fi
[ "${VHFS_BENCH_WARM:-0}" = 1 ] || rm -rf "$home/cache/indexes"

vhfs mount --foreground --no-outputs --inputs-dir "$VHFS_BENCH_MNT" --config-dir "$home/config" \
  --input data=dataset://bench/v1 ${VHFS_BENCH_MOUNT_ARGS:-} > "$home/mount.out" 2> "$home/mount.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' TERM INT
for _ in $(seq 1 600); do
  if grep -q '^ready' "$home/mount.out" 2>/dev/null; then break; fi
  kill -0 $pid 2>/dev/null || { cat "$home/mount.log" >&2; exit 1; }
  sleep 0.01
done
echo "ready root=data pid=$pid"
wait $pid
