#!/usr/bin/env bash
# Idempotent set-up shared by the README's two commands and CI: system packages, then npm dependencies,
# then the TypeScript build. Safe to run again; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
# grep reads to the end (not -q): with pipefail, ldconfig killed by SIGPIPE would fail the test.
ldconfig -p 2>/dev/null | grep 'libfuse\.so\.2' >/dev/null || need_pkgs+=(libfuse2)
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
command -v zip >/dev/null 2>&1 || need_pkgs+=(zip)
command -v unzip >/dev/null 2>&1 || need_pkgs+=(unzip)
# Debian's python3 itself: tests run jobs as another uid, which cannot use a python under /root (pyenv).
[ -x /usr/bin/python3 ] || need_pkgs+=(python3)
# The container tests (test/container/, opt-in: VHFS_TEST_CONTAINERS=1, always in .ci/run) run Debian's
# Docker and build their image with debootstrap; nobody else pays for installing them.
if [ "${VHFS_TEST_CONTAINERS:-}" = 1 ]; then
  [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || need_pkgs+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_pkgs+=(debootstrap)
fi
command -v sqlite3 >/dev/null 2>&1 || need_pkgs+=(sqlite3)
# better-sqlite3 and the native read path (native/vhfs-fuse.c) compile from source.
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc)
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
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
bash scripts/build-native.sh
npx tsc -p tsconfig.json
