import test from 'ava';
import { compileGlob, globProblem, hasWildcard, listPrefix, wildcardRoot } from '../../src/uri/glob.js';

// [pattern, key, matches]
const TABLE: Array<[string, string, boolean]> = [
  // `*`: one level, zero or more characters
  ['img/*.jpg', 'img/a.jpg', true],
  ['img/*.jpg', 'img/.jpg', true],
  ['img/*.jpg', 'img/d/a.jpg', false],
  ['img/*.jpg', 'img/a.png', false],
  ['img/*', 'img/a', true],
  ['img/*', 'img/a/b', false],
  ['*/x', 'a/x', true],
  ['*/x', 'x', false],
  ['a*b', 'ab', true],
  ['a*b', 'axxb', true],
  ['a*b', 'ax/b', false],
  // `**` inside a segment: any depth
  ['foo/bar/**.jpg', 'foo/bar/x.jpg', true],
  ['foo/bar/**.jpg', 'foo/bar/dataset1/a.jpg', true],
  ['foo/bar/**.jpg', 'foo/bar/a/b/c.jpg', true],
  ['foo/bar/**.jpg', 'foo/baz/a.jpg', false],
  ['foo/bar/**.jpg', 'foo/bar/a.jpg.txt', false],
  ['**.jpg', 'a/b/c.jpg', true],
  ['**.jpg', 'x.jpg', true],
  ['a**', 'a', true],
  ['a**', 'a/b/c', true],
  // `**/` at a segment start: zero or more whole directories
  ['**/*.json', 'a.json', true],
  ['**/*.json', 'x/y/a.json', true],
  ['**/*.json', 'x/y/a.jsonl', false],
  ['data/**/*.json', 'data/a.json', true],
  ['data/**/*.json', 'data/x/y/a.json', true],
  ['data/**/*.json', 'dataa.json', false],
  ['data/**/*.json', 'other/a.json', false],
  ['data/**', 'data/a', true],
  ['data/**', 'data/a/b', true],
  ['data/**', 'datax', false],
  // literals: regex specials and glob-looking characters are plain text
  ['a.b', 'axb', false],
  ['a.b', 'a.b', true],
  ['(x)+[y]?{z}|$^\\', '(x)+[y]?{z}|$^\\', true],
  ['(x)+[y]?{z}|$^\\', 'x', false],
  ['x?', 'xy', false],
  ['*', '', true],
  ['', '', true],
  ['', 'a', false],
  ['key', 'key', true],
  ['key', 'key2', false],
  // keys with newlines are still text
  ['a/*', 'a/b\nc', true],
];

for (const [pattern, key, expected] of TABLE) {
  test(`glob ${JSON.stringify(pattern)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(key)}`, (t) => {
    t.is(compileGlob(pattern).match(key), expected);
  });
}

test('listPrefix and wildcardRoot', (t) => {
  const cases: Array<[string, string, string]> = [
    ['foo/bar/**.jpg', 'foo/bar/', 'foo/bar/'],
    ['foo/ba*/x.jpg', 'foo/ba', 'foo/'],
    ['*.jpg', '', ''],
    ['**/*.json', '', ''],
    ['a/b/c', 'a/b/c', 'a/b/'],
    ['/abs/dir/*.txt', '/abs/dir/', '/abs/dir/'],
  ];
  for (const [pattern, prefix, root] of cases) {
    t.is(listPrefix(pattern), prefix, pattern);
    t.is(wildcardRoot(pattern), root, pattern);
    const m = compileGlob(pattern);
    t.is(m.listPrefix, prefix);
    t.is(m.wildcardRoot, root);
  }
});

test('three or more stars are rejected', (t) => {
  t.regex(globProblem('a/***.jpg') ?? '', /"\*\*\*" is not a wildcard/);
  t.throws(() => compileGlob('a/****'), { message: /a\/\*\*\*\*: "\*\*\*\*" is not a wildcard/ });
  t.is(globProblem('a/**/b/*.c'), undefined);
});

test('hasWildcard', (t) => {
  t.true(hasWildcard('a/*'));
  t.false(hasWildcard('a/b?'));
});

// How fast this is (the matcher is linear in the key) is measured by scripts/bench/glob.ts, not here.
test('a pathological pattern on a long key gives the right answer', (t) => {
  const m = compileGlob('**a**a**a**a**a**a**a**a**b');
  t.false(m.match('a'.repeat(5000)));
  t.true(m.match(`${'a'.repeat(4999)}b`));
  t.true(m.match('abababababababab'));
  t.false(m.match('aaaaaaab'), 'eight a before the b are needed');
  t.true(m.match('aaaaaaaab'));
});
