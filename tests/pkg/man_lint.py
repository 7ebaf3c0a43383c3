# SPDX-License-Identifier: MIT
"""mandoc -Tlint -W warning on each manual page: any warning or error
fails (style messages, like references to pages not installed here, do
not). Skipped (exit 77) where mandoc is not installed.

And the METRICS list of smtpfront(8) renders as a list of families: every
tag line is `name[ {label, ...}][, name[ {label, ...}]]...`, no brace
swallowing the names after it (a misplaced Brq did, issue 20)."""

import re
import shutil
import subprocess
import sys


FAMILY = r'[a-z_]+(?: \{[a-z_]+(?:, [a-z_]+)*\})?'
TAG = re.compile(r'^ {5}%s(?:, %s)*$' % (FAMILY, FAMILY))


def metrics_tags(text):
	"""The tag lines (indent 5) of the rendered METRICS section."""
	m = re.search(r'^METRICS\n(.*?)^[A-Z]', text, re.M | re.S)
	if m is None:
		return None
	body = m.group(1).split('The families', 1)
	if len(body) != 2:
		return None
	return [l for l in body[1].split('\n')[1:] if re.match(r'^ {5}\S', l)]


def check_metrics(page, text):
	"""The problems of the rendered METRICS list, [] when none."""
	tags = metrics_tags(text)
	if tags is None:
		return ['%s: no METRICS section' % page]
	if len(tags) < 10:
		return ['%s: only %d metric families rendered' % (page, len(tags))]
	return ['%s: metrics tag renders wrong: %r' % (page, t.strip())
		for t in tags if not TAG.match(t)]


def main(pages):
	mandoc = shutil.which('mandoc')
	if mandoc is None:
		print('SKIP: mandoc is not installed (apt-get install mandoc)')
		return 77
	failed = 0
	for page in pages:
		r = subprocess.run([mandoc, '-Tlint', '-W', 'warning', page],
			stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
			timeout=60)
		if r.returncode != 0 or r.stdout.strip():
			print('FAIL: %s (mandoc exit %d):\n%s' % (page, r.returncode,
				r.stdout.rstrip()))
			failed += 1
			continue
		# and it must render: an empty page would lint clean
		out = subprocess.run([mandoc, '-Tascii', page], stdout=subprocess.PIPE,
			stderr=subprocess.PIPE, text=True, timeout=60)
		text = re.sub('.\b', '', out.stdout)   # no overstrike
		if out.returncode != 0 or 'DESCRIPTION' not in text:
			print('FAIL: %s does not render: %s' % (page, out.stderr.strip()))
			failed += 1
			continue
		if page.endswith('smtpfront.8'):
			problems = check_metrics(page, text)
			if problems:
				print('FAIL: ' + '\nFAIL: '.join(problems))
				failed += 1
				continue
		print('ok: %s (%d lines rendered)' % (page, out.stdout.count('\n')))
	return 1 if failed else 0


if __name__ == '__main__':
	sys.exit(main(sys.argv[1:]))
