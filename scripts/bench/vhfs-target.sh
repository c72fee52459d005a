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

# By default the mount is what `vhfs mount` starts: a detached daemon, with the V8 and malloc settings it gets
# from src/fuse/daemon.ts (DAEMON_NODE_FLAGS, DAEMON_ENV), and `pid=` names it, so the RSS figures are the
# daemon's alone. VHFS_BENCH_FOREGROUND=1 serves from `vhfs mount --foreground` in this script's process
# tree instead (plain `node`: none of those settings; RSS summed over the tree, this bash included).
mount_args=(--no-outputs --inputs-dir "$VHFS_BENCH_MNT" --config-dir "$home/config" --input data=dataset://bench/v1)
if [ "${VHFS_BENCH_FOREGROUND:-0}" != 1 ]; then
  # shellcheck disable=SC2086 # VHFS_BENCH_MOUNT_ARGS is a list of flags
  daemon=$(vhfs --json mount "${mount_args[@]}" ${VHFS_BENCH_MOUNT_ARGS:-} | node -e 'process.stdin.on("data", (d) => console.log(JSON.parse(d).pid))')
  trap 'vhfs unmount --inputs-dir "$VHFS_BENCH_MNT" >&2; exit 0' TERM INT
  echo "ready root=data pid=$daemon"
  while kill -0 "$daemon" 2>/dev/null; do sleep 1 & wait $!; done
  exit 1
fi
# shellcheck disable=SC2086
vhfs mount --foreground "${mount_args[@]}" ${VHFS_BENCH_MOUNT_ARGS:-} > "$home/mount.out" 2> "$home/mount.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' TERM INT
for _ in $(seq 1 600); do
  if grep -q '^ready' "$home/mount.out" 2>/dev/null; then break; fi
  kill -0 $pid 2>/dev/null || { cat "$home/mount.log" >&2; exit 1; }
  sleep 0.01
done
echo "ready root=data pid=$pid"
wait $pid
