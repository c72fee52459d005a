#!/usr/bin/env bash
# The README's test command: set up, then run every test once (ava, TAP output), and end with the plain
# line "N passed, N failed, N skipped" that CI reads. Extra arguments go to ava (e.g. a file under dist/test/).
#
# Counting from ava's TAP stream, each test in exactly one bucket:
#   passed   `ok N - title`
#   failed   `not ok N - title` (and a crash or timeout outside any test counts as one)
#   skipped  `ok N - title # SKIP` (test.skip) and `not ok N - title # TODO` (test.todo), listed by name
#   known failures  `ok N - … [known bug: …]`: a test.failing that still fails (test/helpers/known-bug.ts);
#            listed by name, never counted as passed
# A test that needs FUSE carries `[fuse]` in its title (fuseTest in test/fuse/helpers.ts). Where /dev/fuse
# exists such a test must run: one skipped there fails the run, since the suite would otherwise "pass"
# without ever mounting anything.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
npx ava --tap "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

title() { sed -E 's/^(not )?ok [0-9]+ - //; s/ # (SKIP|TODO)$//'; }
skipped_lines=$(grep -E '^ok [0-9]+ - .* # SKIP$|^not ok [0-9]+ - .* # TODO$' "$log" | title || true)
known_lines=$(grep -E '^ok [0-9]+ - ' "$log" | grep -vE ' # SKIP$' | grep -F '[known bug:' | title || true)
count() { if [ -z "$1" ]; then echo 0; else printf '%s\n' "$1" | wc -l; fi; }
skipped=$(count "$skipped_lines")
known=$(count "$known_lines")
passed=$(( $(grep -cE '^ok [0-9]+ - ' "$log" || true) - $(grep -cE '^ok [0-9]+ - .* # SKIP$' "$log" || true) - known ))
failed=$(grep -E '^not ok [0-9]+ - ' "$log" | grep -cvE ' # TODO$' || true)
# A crash or timeout outside any test still fails the run.
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi

echo
if [ "$known" -gt 0 ]; then
  echo "known failures (test.failing: product bugs not fixed yet; not counted as passed): $known"
  printf '%s\n' "$known_lines" | sed 's/^/  /'
fi
if [ "$skipped" -gt 0 ]; then
  echo "skipped: $skipped"
  printf '%s\n' "$skipped_lines" | sed 's/^/  /'
fi
fuse_skipped=$(printf '%s\n' "$skipped_lines" | grep -cF '[fuse]' || true)
if [ -e /dev/fuse ] && [ "$fuse_skipped" -gt 0 ]; then
  # Each such test moves from "skipped" to "failed": here, not running is its failure.
  echo "error: $fuse_skipped test(s) needing FUSE were skipped although /dev/fuse exists (listed above)"
  skipped=$((skipped - fuse_skipped))
  failed=$((failed + fuse_skipped))
fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
