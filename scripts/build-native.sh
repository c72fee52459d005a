#!/usr/bin/env bash
# Builds native/vhfs-fuse.c — fuse-native's own binding compiled together with vhfs's native read path —
# and installs it as fuse-native's build/Release/fuse.node, which fuse-native loads in preference to its
# prebuilt binary. Rebuilds only when a source or Node changed. Without a compiler the build is skipped
# with a warning: mounts then read through JavaScript only (slower, same answers).
set -euo pipefail
cd "$(dirname "$0")/.."

target=node_modules/fuse-native/build/Release/fuse.node
stamp=node_modules/.vhfs-native-sha256
sources_hash=$( { cat native/vhfs-fuse.c native/binding.gyp node_modules/fuse-native/fuse-native.c; node -p process.versions.modules; } | sha256sum | cut -d' ' -f1)
if [ -f "$target" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sources_hash" ]; then
  exit 0
fi

# npm ships node-gyp; find it beside the npm that runs here.
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
node_gyp="$npm_dir/node_modules/node-gyp/bin/node-gyp.js"
if [ ! -f "$node_gyp" ] || ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  echo "build-native: warning: no node-gyp or C compiler here; mounts read through JavaScript only" >&2
  exit 0
fi
nodedir=$(npm config get nodedir 2>/dev/null || true)
args=(rebuild --directory=native --loglevel=error)
if [ -n "$nodedir" ] && [ "$nodedir" != undefined ] && [ "$nodedir" != null ]; then args+=("--nodedir=$nodedir"); fi
echo "setup: building the native read path (native/vhfs-fuse.c)" >&2
if ! log=$(node "$node_gyp" "${args[@]}" 2>&1); then
  echo "$log" | tail -20 >&2
  echo "build-native: warning: the native read path did not build; mounts read through JavaScript only" >&2
  exit 0
fi
mkdir -p "$(dirname "$target")"
cp native/build/Release/fuse.node "$target.tmp"
mv "$target.tmp" "$target"
echo "$sources_hash" > "$stamp"
