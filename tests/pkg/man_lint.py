# SPDX-License-Identifier: MIT
"""mandoc -Tlint -W warning on each manual page: any warning or error
fails (style messages, like references to pages not installed here, do
not). Skipped (exit 77) where mandoc is not installed."""

import re
import shutil
import subprocess
import sys


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
		print('ok: %s (%d lines rendered)' % (page, out.stdout.count('\n')))
	return 1 if failed else 0


if __name__ == '__main__':
	sys.exit(main(sys.argv[1:]))
