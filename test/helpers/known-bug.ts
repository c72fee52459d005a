/**
 * A test that shows a product bug not fixed yet: it runs as ava's `test.failing` (the run stays green
 * while the bug is there, and turns red the day it is fixed, so the marker is removed). Its title says
 * `[known bug: …]` so that the report names the bug; scripts/test.sh counts and lists every expected
 * failure apart (from ava's `[expected fail]` mark): a known failure is never reported as a pass.
 */
import type { ExecutionContext, TestFn } from 'ava';

const KNOWN_BUG_TAG = '[known bug:';

export function knownBug(test: TestFn, title: string, bug: string, impl: (t: ExecutionContext) => void | Promise<void>): void {
  test.failing(`${title} ${KNOWN_BUG_TAG} ${bug}]`, impl);
}
