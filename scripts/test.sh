#!/usr/bin/env bash
# The README's test command: set up, then run every test once, and end with the plain line
# "N passed, N failed" that CI reads (skips are counted on the line before). Extra arguments go to ava (e.g. a file under dist/test/).
#
# Counted from ava's verbose report (not TAP: TAP prints a test.failing that still fails as a plain "ok",
# indistinguishable from a pass). Each test lands in exactly one bucket:
#   passed          `✔ title`
#   known failures  `✔ [expected fail] title`: a test.failing (a product or server bug not fixed yet) that
#                   still fails; listed by name, never counted as passed
#   skipped         `- [skip] title` (test.skip) and `- [todo] title` (test.todo); listed by name
#   failed          every `✘` line: a failed test, a test.failing that now passes, and a crash, timeout or
#                   test file that exited early (each counts one; a non-zero exit with none counts one too)
# A test that needs FUSE carries `[fuse]` in its title (fuseTest in test/fuse/helpers.ts). Where /dev/fuse
# exists such a test must run: one skipped there counts as failed, since the suite would otherwise "pass"
# without ever mounting anything.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
npx ava --verbose "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# The reporter's per-test lines are indented two spaces; logs and error details are indented further.
title() { sed -E 's/^  (✔|✘|-) (\[(expected fail|skip|todo)\] |\[[a-z ]+\]: )?//'; }
lines_of() { grep -E "$1" "$log" | title || true; }
count() { if [ -z "$1" ]; then echo 0; else printf '%s\n' "$1" | wc -l; fi; }
known_lines=$(grep -F '  ✔ [expected fail] ' "$log" | title || true)
skipped_lines=$(lines_of '^  - \[(skip|todo)\] ')
failed_lines=$(lines_of '^  ✘ ')
passed=$(( $(grep -cE '^  ✔ ' "$log" || true) - $(count "$known_lines") ))
known=$(count "$known_lines")
skipped=$(count "$skipped_lines")
failed=$(count "$failed_lines")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi

echo
if [ "$known" -gt 0 ]; then
  echo "known failures (test.failing: bugs not fixed yet; not counted as passed): $known"
  printf '%s\n' "$known_lines" | sed 's/^/  /'
fi
if [ "$skipped" -gt 0 ]; then
  echo "skipped (test.skip, test.todo): $skipped"
  printf '%s\n' "$skipped_lines" | sed 's/^/  /'
fi
if [ "$failed" -gt 0 ] && [ -n "$failed_lines" ]; then
  echo "failed: $failed"
  printf '%s\n' "$failed_lines" | cut -c1-300 | sed 's/^/  /'
fi
fuse_skipped=$(printf '%s\n' "$skipped_lines" | grep -cF '[fuse]' || true)
if [ -e /dev/fuse ] && [ "$fuse_skipped" -gt 0 ]; then
  # Each such test moves from "skipped" to "failed": here, not running is its failure.
  echo "error: $fuse_skipped test(s) needing FUSE were skipped although /dev/fuse exists (listed above)"
  skipped=$((skipped - fuse_skipped))
  failed=$((failed + fuse_skipped))
fi
echo "${skipped} skipped"
# The last line is what CI reads.
echo "${passed} passed, ${failed} failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
