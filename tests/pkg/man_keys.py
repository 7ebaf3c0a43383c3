# SPDX-License-Identifier: MIT
"""The manual pages cannot fall behind the code.

- Every key the config loader knows (read from config/config.c's schema
  tables, nested the way the loader nests them) must be documented in
  smtpfront.yaml(5) as `.It Ic KEY` in the list of its mapping, with its
  default (or "Required").
- Every option in `smtpfront -h` must be an `.It Fl X` of smtpfront(8);
  every option and command in `smtpfrontctl -h` an `.It Fl X` / `.It Cm
  CMD` of smtpfrontctl(8).

Keys documented in the page that this loader does not know yet are
printed (SPEC.md keys other engineers are adding), not failed.
"""

import argparse
import re
import subprocess
import sys

# ---------------------------------------------------------------- the loader

TABLE_RE = re.compile(
	r'static\s+const\s+struct\s+cfg_key\s+(\w+)\s*\[\s*\]\s*=\s*\{(.*?)\n\};', re.S)
SECTION_RE = re.compile(
	r'static\s+const\s+struct\s+cfg_section\s+(\w+)\s*=\s*SECTION\(\s*"([^"]*)"'
	r'\s*,\s*"[^"]*"\s*,\s*(\w+)\s*\)', re.S)
# OpenBSD style: the return type on its own line, the name at column 0.
FUNC_RE = re.compile(r'^(\w+)\(([^;{]*?)\)\n\{\n(.*?)^\}', re.S | re.M)


def _entries(body):
	"""Split a table body into its top-level { ... } or K_XXX(...) entries."""
	out, depth, start = [], 0, None
	i = 0
	while i < len(body):
		c = body[i]
		if c == '"':
			j = i + 1
			while body[j] != '"':
				j += 2 if body[j] == '\\' else 1
			i = j + 1
			continue
		if c in '({':
			if depth == 0:
				# a macro entry starts at its name
				m = re.search(r'(\w+)\s*$', body[:i])
				start = m.start(1) if (c == '(' and m) else i
			depth += 1
		elif c in ')}':
			depth -= 1
			if depth == 0:
				out.append(body[start:i + 1])
		i += 1
	return out


def loader_keys(source):
	"""{path tuple: None} for every key of the loader, e.g. ('pools',
	'health', 'rise'); raises ValueError when the schema cannot be read."""
	tables = {name: _entries(body) for name, body in TABLE_RE.findall(source)}
	sections = {var: (name, table) for var, name, table in SECTION_RE.findall(source)}
	funcs = {name: body for name, _, body in FUNC_RE.findall(source)}
	if not tables or not sections:
		raise ValueError('no cfg_key tables or cfg_section definitions found')
	if 'cfg_root_section' not in sections:
		raise ValueError('no cfg_root_section')

	def func_sections(fn, seen):
		"""Sections a parse function walks, directly or through the
		functions of config.c it calls."""
		if fn in seen or fn not in funcs:
			return set()
		seen.add(fn)
		body = funcs[fn]
		found = set(re.findall(r'\b(cfg_\w+_section)\b', body)) & set(sections)
		for callee in re.findall(r'\b(cfg_\w+)\s*\(', body):
			found |= func_sections(callee, seen)
		return found

	keys = {}

	def walk(section_var, prefix, active):
		if section_var in active:
			raise ValueError('recursive section ' + section_var)
		name, table = sections[section_var]
		if table not in tables:
			raise ValueError('section %s uses unknown table %s' % (section_var, table))
		for entry in tables[table]:
			key = re.search(r'"([^"]+)"', entry)
			if key is None:
				raise ValueError('cannot read the key name of %r in %s' % (entry, table))
			path = prefix + (key.group(1),)
			keys[path] = None
			children = set(re.findall(r'\b(cfg_\w+_section)\b', entry)) & set(sections)
			fn = re.match(r'K_FUNC\s*\(\s*"[^"]+"\s*,\s*(\w+)', entry)
			if fn is None:
				fn = re.search(r'\.parse\s*=\s*(\w+)', entry)
			if fn is not None:
				children |= func_sections(fn.group(1), set())
			for child in sorted(children - {section_var}):
				walk(child, path, active | {section_var})

	walk('cfg_root_section', (), frozenset())
	# Every table must have been reached: a section the walk cannot see
	# would be a key nobody checks.
	reached = {sections[v][1] for v in sections}
	for table in tables:
		if table not in reached:
			raise ValueError('table %s is not part of any section' % table)
	return keys


# ---------------------------------------------------------------- the page

def page_items(text, macro, sections):
	"""Items `.It <macro> WORD` of the page as {path: body}: a path is the
	prefix of its .Sh (from `sections`) plus the words of the enclosing
	items; a body is the item's own text, without nested items. Items
	under other .Sh headings are left out."""
	items = {}
	prefix = None
	stack = []          # per open .Bl: the path of its current item, or None
	for line in text.splitlines():
		if line.startswith('.Sh '):
			title = line[4:].strip().strip('"')
			prefix = sections.get(title)
			stack = []
			continue
		if prefix is None:
			continue
		if line.startswith('.Bl'):
			stack.append(None)
			continue
		if line.startswith('.El'):
			if stack:
				stack.pop()
			continue
		if line.startswith('.It') and stack:
			m = re.match(r'\.It\s+%s\s+([A-Za-z0-9_.-]+)' % macro, line)
			if m:
				parents = tuple(p[-1] for p in stack[:-1] if p is not None)
				stack[-1] = tuple(prefix) + parents + (m.group(1),)
				items.setdefault(stack[-1], '')
			else:
				stack[-1] = None
			continue
		for path in reversed(stack):
			if path is not None:
				items[path] += line + '\n'
				break
	return items


YAML_SECTIONS = {
	'GLOBAL CONFIGURATION': (),
	'LISTENERS': ('listeners',),
	'POOLS': ('pools',),
}


def check_yaml_page(loader_src, page_text):
	errors, notes = [], []
	keys = loader_keys(loader_src)
	items = page_items(page_text, 'Ic', YAML_SECTIONS)
	for path in sorted(keys):
		dotted = '.'.join(path)
		if path not in items:
			errors.append('key %s (config/config.c) is not documented in '
				'smtpfront.yaml(5): add ".It Ic %s" to the list of %s' % (
				dotted, path[-1], '.'.join(path[:-1]) or 'GLOBAL CONFIGURATION'))
			continue
		body = items[path]
		nested = any(p[:len(path)] == path and len(p) > len(path) for p in items)
		if not nested and not re.search(r'\b(default|required)\b', body, re.I):
			errors.append('key %s: smtpfront.yaml(5) gives no default '
				'("The default is ...") and does not say "Required"' % dotted)
	for path in sorted(set(items) - set(keys)):
		notes.append('documented, not known to this loader: ' + '.'.join(path))
	return keys, errors, notes


def usage_words(binary):
	"""Options (-x) and commands of a program's -h text: options anywhere
	before "commands:" (usage lines, "[-htV]" groups, "  -V, --version"),
	commands as the first word of a line indented by two spaces under it
	(deeper lines continue a description)."""
	r = subprocess.run([binary, '-h'], stdout=subprocess.PIPE,
		stderr=subprocess.STDOUT, text=True, timeout=30)
	if r.returncode != 0:
		raise ValueError('%s -h exited %d: %s' % (binary, r.returncode, r.stdout))
	opts, cmds = set(), set()
	in_cmds = False
	for line in r.stdout.splitlines():
		if re.match(r'^\S.*:$', line):
			in_cmds = line.startswith('commands')
			continue
		if in_cmds:
			m = re.match(r'^  ([a-z][a-z-]*)\b', line)
			if m:
				cmds.add(m.group(1))
			continue
		for group in re.findall(r'(?<![\w-])-([A-Za-z]+)\b', line):
			# "-s SOCKET" is one option; "[-htV]" several
			if len(group) == 1 or re.search(r'\[-%s\]' % group, line):
				opts |= set(group)
	return opts, cmds


def check_program_page(binary, page_text, name):
	errors = []
	opts, cmds = usage_words(binary)
	if not opts:
		errors.append('%s -h lists no options: cannot check %s(8)' % (binary, name))
	fl = set(re.findall(r'^\.It\s+(?:Op\s+)?Fl\s+(\w+)', page_text, re.M))
	cm = set(re.findall(r'^\.It\s+Cm\s+([a-z][a-z-]*)', page_text, re.M))
	for o in sorted(opts - fl):
		errors.append('option -%s of "%s -h" is not documented in %s(8) '
			'(.It Fl %s)' % (o, name, name, o))
	for c in sorted(cmds - cm):
		errors.append('command %s of "%s -h" is not documented in %s(8) '
			'(.It Cm %s)' % (c, name, name, c))
	return opts, cmds, errors


def main():
	ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
	ap.add_argument('--loader', required=True)
	ap.add_argument('--yaml-page', required=True)
	ap.add_argument('--smtpfront')
	ap.add_argument('--smtpfront-page')
	ap.add_argument('--smtpfrontctl')
	ap.add_argument('--smtpfrontctl-page')
	a = ap.parse_args()

	with open(a.loader) as f:
		src = f.read()
	with open(a.yaml_page) as f:
		page = f.read()
	errors = []
	try:
		keys, errs, notes = check_yaml_page(src, page)
	except ValueError as e:
		print('man_keys: cannot read the schema of %s: %s' % (a.loader, e))
		return 1
	errors += errs
	print('smtpfront.yaml(5): %d keys of the loader checked' % len(keys))
	for n in notes:
		print('note:', n)
	for binary, pagefile, name in ((a.smtpfront, a.smtpfront_page, 'smtpfront'),
			(a.smtpfrontctl, a.smtpfrontctl_page, 'smtpfrontctl')):
		if not binary:
			continue
		with open(pagefile) as f:
			text = f.read()
		opts, cmds, errs = check_program_page(binary, text, name)
		print('%s(8): options %s, commands %s checked' % (
			name, ' '.join('-' + o for o in sorted(opts)),
			' '.join(sorted(cmds)) or '-'))
		errors += errs
	for e in errors:
		print('FAIL:', e)
	return 1 if errors else 0


if __name__ == '__main__':
	sys.exit(main())
