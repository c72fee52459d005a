#!/usr/bin/env bash
# Idempotent set-up shared by the README's two commands and CI: system packages, then npm dependencies,
# then the TypeScript build. Safe to run again; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
ldconfig -p 2>/dev/null | grep -q 'libfuse\.so\.2' || need_pkgs+=(libfuse2)
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
command -v zip >/dev/null 2>&1 || need_pkgs+=(zip)
command -v unzip >/dev/null 2>&1 || need_pkgs+=(unzip)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v sqlite3 >/dev/null 2>&1 || need_pkgs+=(sqlite3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_pkgs[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install ${need_pkgs[*]} (run: sudo apt-get install -y ${need_pkgs[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if [ ! -e /dev/fuse ]; then
  echo "setup: /dev/fuse is missing; in a container run with --device /dev/fuse --cap-add SYS_ADMIN" >&2
  exit 1
fi

# npm ci only when the lock file's content changed since the last install (better-sqlite3 compiles for
# ~70 s). Content, not mtime: a fresh checkout or a git worktree has a new lock file with the same content.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.vhfs-lock-sha256 ] || [ "$(cat node_modules/.vhfs-lock-sha256)" != "$lock_hash" ]; then
  echo "setup: installing npm dependencies (better-sqlite3 compiles from source; about a minute)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.vhfs-lock-sha256
fi
npx tsc -p tsconfig.json
