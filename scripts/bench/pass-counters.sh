#!/usr/bin/env bash
# Two in-order read passes over the peers.ts dataset through a vhfs mount (page cache dropped before pass
# 1), printing files/s and the daemon's store / block-cache counters after pass 1. Extra arguments go to
# `vhfs mount` (e.g. --block-size 1M, --no-kernel-cache, --cache-timeout 0).
#
#   bash scripts/bench/pass-counters.sh [WORK] [-- mount args…]     (WORK default /tmp/vhfs-bench; run
#   peers.js with the vhfs target once first: it creates WORK/data/vhfs-home with dataset://bench/v1)
set -euo pipefail
work=/tmp/vhfs-bench
if [ $# -gt 0 ] && [ "$1" != "--" ]; then work=$1; shift; fi
[ "${1:-}" = "--" ] && shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
home=$work/data/vhfs-home
root=$work/pass-counters
vhfs() { node "$repo/bin/vhfs.js" --home "$home" "$@"; }
[ -f "$home/.bench-ready" ] || { echo "no $home: run peers.js with the vhfs target first" >&2; exit 1; }

vhfs unmount --root "$root" >/dev/null 2>&1 || true
pid=$(vhfs --json mount --root "$root" --input data=dataset://bench/v1 --stats-file "$work/pass-counters.json" "$@" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
trap 'vhfs unmount --root "$root" >/dev/null 2>&1 || true' EXIT
find "$root/inputs/data" -type f -name 'f*' | sort > "$work/pass-counters.list"
n=$(wc -l < "$work/pass-counters.list")
pass() {
  local s e
  s=$(date +%s.%N); xargs -a "$work/pass-counters.list" cat > /dev/null; e=$(date +%s.%N)
  python3 -c "print(f'$1: {$n/($e-$s):.0f} files/s')"
}
sync; echo 3 > /proc/sys/vm/drop_caches
pass "pass 1 (cold page cache)"
kill -USR1 "$pid"; sleep 0.5
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("store:", d["store"]); print("block cache:", d["cache"])' "$work/pass-counters.json"
pass "pass 2"
