#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fails when a document in the repository names a file the repository
does not have (issue 20: "no document points outside it").

usage: tests/docrefs.py [SOURCE_ROOT]   (default: the directory above tests/)

Documents: README.md, every other *.md and README* file in the tree, and
the manual pages doc/*.[1-8]. Left out: build directories (`build*`, or any
with a meson-private/ as the package builds make them), hidden directories
and bench/results/ (what bench/run writes).

What counts as a repository path, and is checked:
- a markdown link `[text](target)` whose target is not a URL (`scheme:`):
  relative to the document's directory; its `#anchor`, also alone, must be a
  heading of the markdown file it points to (GitHub's anchors);
- any name ending in `.md` (bare, relative or absolute): a markdown file is
  always one of ours, so `SPEC.md` or `/somewhere/SPEC.md` must be in the
  tree (next to the document or from the root);
- a word whose first component is a top-level directory of the repository
  followed by `/` (`scripts/demo.sh`, `tests/pkg/`, `.ci/run`, also after
  `./`), in prose, in backticks and in code blocks;
- inside backticks, also a word relative to the document's own directory
  (`rpm/smtpfront.spec` in packaging/README.md) and any relative word with a
  `/` whose last part has a source or document extension (`.c`, `.py`, ...);
- inside backticks, a bare name ending in `.c`, `.h`, `.py` or `.sh`
  (`test_metrics.py`): some file of the tree must have that name;
- in a manual page, the argument of `.Pa` when it is relative and has a `/`.
A path is checked relative to the document's directory, then to the root.
`<placeholder>` parts and `*` match any name; a glob must match something.

Not repository paths, never checked: absolute paths other than `.md`
(installed files: /etc/..., /usr/..., /var/..., /run/..., /dev/log); paths
under a build directory (build/, build-asan/, build-pkg/, ...) and under
bench/results/ (outputs); URLs; other bare file names (`main.cf`,
`deny.state`, `smtpfront.rules.yml` name the operator's or an installed
file); words whose first part is no directory of ours (`pool/mx1`,
`10.0.0.0/24`, `POOL/SERVER`, `DIR/t`). Comments in source files are not
documents.

Before it scans, the checker runs itself on built-in samples (a missing
`SPEC.md`, `STYLE.md's`, a broken link, a missing heading, a missing
`scripts/` file and source file, and good paths that must pass), so that a
broken pattern fails here instead of passing everything.

Set DOCREFS_LIST=1 to print every reference it checked."""

import glob
import os
import re
import sys

EXTENSIONS = ('.c', '.h', '.py', '.sh', '.md', '.yaml', '.yml', '.build',
              '.spec', '.service', '.conf', '.txt', '.dict', '.5', '.8')
SKIP_DIRS = ('bench/results',)
OUTPUTS = ('bench/results/',)
SOURCES = ('.c', '.h', '.py', '.sh')


def is_build_dir(name):
    return name == 'build' or name.startswith('build-') or name.startswith('build_')


def documents(root):
    docs = []
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        dirs[:] = sorted(x for x in dirs
                         if not x.startswith('.') and not is_build_dir(x)
                         and not os.path.isdir(os.path.join(d, x, 'meson-private'))
                         and os.path.normpath(os.path.join(rel, x)) not in SKIP_DIRS)
        for f in sorted(files):
            p = os.path.normpath(os.path.join(rel, f))
            if f.endswith('.md') or f.startswith('README'):
                docs.append(p)
            elif rel == 'doc' and re.fullmatch(r'.+\.[1-8]', f):
                docs.append(p)
    return docs


class Checker:
    def __init__(self, root):
        self.root = root
        self.top_dirs = set(x for x in os.listdir(root)
                            if os.path.isdir(os.path.join(root, x))
                            and x != '.git' and not is_build_dir(x))
        self.checked = 0
        self.basenames = set()
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if not x.startswith('.') and not is_build_dir(x)]
            self.basenames.update(files)

    def exists(self, docdir, path):
        """Whether path (relative) names something in the tree, from the
        document's directory or from the root."""
        if path.startswith('BASENAME:'):
            return path[len('BASENAME:'):] in self.basenames
        pattern = re.sub(r'<[^<>/]*>', '*', path)
        for base in (docdir, ''):
            full = os.path.normpath(os.path.join(self.root, base, pattern))
            if not full.startswith(os.path.abspath(self.root)):
                continue
            if any(c in pattern for c in '*?['):
                if glob.glob(full):
                    return True
            elif os.path.exists(full):
                return True
        return False

    def anchors(self, doc, text=None):
        """GitHub's anchors for the headings of a markdown document."""
        if text is None:
            try:
                with open(os.path.join(self.root, doc), encoding='utf-8') as f:
                    text = f.read()
            except OSError:
                return set()
        text = re.sub(r'```.*?```', '', text, flags=re.S)
        slugs = set()
        for h in re.findall(r'^#+\s+(.*?)\s*$', text, re.M):
            slug = re.sub(r'[^\w\- ]', '', h.lower()).replace(' ', '-')
            n, s = 0, slug
            while s in slugs:
                n += 1
                s = '%s-%d' % (slug, n)
            slugs.add(s)
        return slugs

    def candidate(self, docdir, word, backticked):
        """The path to check in word, or None when it is no repository path."""
        word = word.lstrip('([{"\'').rstrip('.,;:!?)]}"\'')
        while word.startswith('./'):
            word = word[2:]
        if not word or '://' in word or word.startswith('~'):
            return None
        if word.startswith(OUTPUTS):
            return None
        m = re.search(r'[\w./-]*\w\.md(?![\w.-])', word)
        if m and '/' not in word[m.end():]:
            return m.group(0)
        if '/' not in word and backticked and word.endswith(SOURCES):
            return 'BASENAME:' + word
        if word.startswith('/') or '/' not in word:
            return None
        first = word.split('/', 1)[0]
        if is_build_dir(first) or first == '..':
            return None
        if first in self.top_dirs:
            return word
        if backticked:
            if os.path.isdir(os.path.join(self.root, docdir, first)) and docdir:
                return word
            if word.endswith(EXTENSIONS) and not re.match(r'^[\d.]+/', word):
                return word
        return None

    def check_text(self, name, text, manpage=False):
        """Problems in one document: (line, message) pairs."""
        docdir = os.path.dirname(name)
        problems = []

        def want(lineno, path, how):
            self.checked += 1
            if os.environ.get('DOCREFS_LIST'):
                print('  %s:%d: %s' % (name, lineno, path))
            if path.startswith('BASENAME:') and not self.exists(docdir, path):
                problems.append((lineno, '%s names %s, which is nowhere in the '
                                 'repository' % (how, path[len('BASENAME:'):])))
            elif path.startswith('BASENAME:'):
                pass
            elif path.startswith('/'):
                problems.append((lineno, '%s names %s, outside the repository'
                                 % (how, path)))
            elif not self.exists(docdir, path):
                problems.append((lineno, '%s names %s, which the repository '
                                 'does not have' % (how, path)))

        for lineno, line in enumerate(text.split('\n'), 1):
            seen = set()
            if manpage:
                m = re.match(r'\.Pa\s+(\S+)', line)
                if m:
                    p = m.group(1)
                    if '/' in p and not p.startswith('/'):
                        seen.add(p)
                        if not is_build_dir(p.split('/', 1)[0]):
                            want(lineno, p, '.Pa')
            for m in re.finditer(r'\[[^\]]*\]\(([^)\s]+)\)', line):
                target = m.group(1)
                if re.match(r'^[a-zA-Z][\w+.-]*:', target):
                    continue
                target, _, anchor = target.partition('#')
                if target:
                    seen.add(target)
                    want(lineno, target, 'link')
                if anchor and (target or name).endswith('.md'):
                    self.checked += 1
                    doc = os.path.normpath(os.path.join(docdir, target)) if target else name
                    if anchor not in self.anchors(doc, text if not target else None):
                        problems.append((lineno, 'link to %s#%s: no such heading'
                                         % (doc, anchor)))
            spans = set()
            for m in re.finditer(r'`([^`]+)`', line):
                for w in m.group(1).split():
                    spans.add(w)
            words = re.sub(r'\[([^\]]*)\]\([^)\s]+\)', r'\1', line)
            for w in re.split(r'[\s`]+', words):
                for part in re.split(r'[=,]', w):
                    p = self.candidate(docdir, part, part in spans or w in spans)
                    if p and p not in seen:
                        seen.add(p)
                        want(lineno, p, 'text')
        return problems

    def check_file(self, name):
        with open(os.path.join(self.root, name), encoding='utf-8') as f:
            text = f.read()
        return self.check_text(name, text, manpage=not name.endswith('.md')
                               and name.startswith('doc/'))


def self_test(root):
    c = Checker(root)
    bad = {
        'The product contract is `SPEC.md`.': 'SPEC.md',
        'See [the notes](doc/no-such-notes.md).': 'doc/no-such-notes.md',
        'Run scripts/no-such-script.sh first.': 'scripts/no-such-script.sh',
        'Kept in /work/shared/STYLE.md.': '/work/shared/STYLE.md',
        "This departs from STYLE.md's rule.": 'STYLE.md',
        'As `no_such_test.py` shows.': 'no_such_test.py',
        'See [Tests](#no-such-heading).': '#no-such-heading',
    }
    good = ['# A heading, here\nRun `./scripts/demo.sh`; see [bench](bench/README.md),'
            ' [above](#a-heading-here), [tests](README.md#tests).',
            'Installed as /etc/smtpfront/smtpfront.yaml; `build/cmd/smtpfront`;'
            ' `pool/mx1`, `10.0.0.0/24`, `tests/test_<module>.c`, `config/*.c`,'
            ' `layering.py`.']
    for text, path in bad.items():
        found = c.check_text('README.md', text)
        if not any(path in msg for _, msg in found):
            return 'self-test: %r not reported in %r (got %r)' % (path, text, found)
    for text in good:
        found = c.check_text('README.md', text)
        if found:
            return 'self-test: %r reported %r' % (text, found)
    if c.checked < len(bad) + 3:
        return 'self-test: only %d references seen' % c.checked
    return None


def main():
    root = (sys.argv[1] if len(sys.argv) > 1 else
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    err = self_test(root)
    if err:
        print(err)
        return 1
    c = Checker(root)
    docs = documents(root)
    if 'README.md' not in docs:
        print('no README.md in %s' % root)
        return 1
    problems = 0
    for name in docs:
        for lineno, msg in c.check_file(name):
            print('%s:%d: %s' % (name, lineno, msg))
            problems += 1
    print('%d documents, %d references checked, %d missing'
          % (len(docs), c.checked, problems))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
