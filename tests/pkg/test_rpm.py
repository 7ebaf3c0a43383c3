# SPDX-License-Identifier: MIT
"""The .rpm, built on this Debian host with Debian's rpm: build it with
packaging/build-rpm.sh (its %check runs the unit suite), rpmlint it (no
error), and check its file list, its config file and its scriptlets
(rpm -qlp, rpm -qp --scripts). Installing it needs an RPM distribution;
the spec's macros fall back only where the distribution lacks them.

Skipped (exit 77) when rpmbuild or rpmlint is missing.
"""

import os
import re
import shutil
import tempfile
import unittest

import pkgharness
from pkgharness import run

TOOLS = ('rpmbuild', 'rpmlint', 'rpm', 'rpmspec')
RPMLINTRC = os.path.join(pkgharness.SOURCE_ROOT, 'packaging', 'rpm', 'smtpfront.rpmlintrc')


def missing():
	for tool in TOOLS:
		if shutil.which(tool) is None:
			return '%s is not installed (scripts/deps.sh test installs it)' % tool
	return None


@unittest.skipIf(missing() is not None, missing() or '')
class Rpm(unittest.TestCase):
	@classmethod
	def setUpClass(cls):
		cls.out = tempfile.mkdtemp(prefix='sfrpm-')
		try:
			r = run([os.path.join(pkgharness.SOURCE_ROOT, 'packaging', 'build-rpm.sh'),
				cls.out], timeout=900)
			cls.build_log = r.stdout
			rpms = [f for f in os.listdir(cls.out) if re.fullmatch(
				r'smtpfront-\d[^-]*-[^-]+\.\w+\.rpm', f)]
			if len(rpms) != 1:
				raise AssertionError('expected one binary rpm, got %s' % rpms)
			cls.rpm = os.path.join(cls.out, rpms[0])
			cls.version = run(['packaging/version.sh'],
				cwd=pkgharness.SOURCE_ROOT).stdout.strip()
		except BaseException:
			shutil.rmtree(cls.out, ignore_errors=True)
			raise

	@classmethod
	def tearDownClass(cls):
		shutil.rmtree(cls.out, ignore_errors=True)

	def _q(self, *args):
		return run(['rpm', '-qp'] + list(args) + [self.rpm]).stdout

	def test_check_ran_the_unit_suite(self):
		self.assertRegex(self.build_log, r'meson test .*--suite unit')
		self.assertRegex(self.build_log, r'\bman_keys\s+OK\b')
		self.assertRegex(self.build_log, r'\nFail:\s+0\s*\n')

	def test_rpmlint_no_error(self):
		r = run(['rpmlint', '-r', RPMLINTRC, self.rpm], check=False, timeout=300)
		errors = [l for l in r.stdout.splitlines() if ': E: ' in l]
		self.assertEqual(errors, [], r.stdout)
		self.assertRegex(r.stdout, r'\b0 errors\b')
		print(r.stdout.strip())
		spec = os.path.join(pkgharness.SOURCE_ROOT, 'packaging', 'rpm', 'smtpfront.spec')
		r = run(['rpmlint', '--ignore-unused-rpmlintrc', spec], check=False,
			timeout=300)
		self.assertEqual([l for l in r.stdout.splitlines() if ': E: ' in l], [],
			r.stdout)

	def test_version_is_meson_version(self):
		self.assertEqual(self._q('--qf', '%{VERSION}'), self.version)

	def test_file_list(self):
		files = set(self._q('-l').split())
		want = {
			'/usr/sbin/smtpfront', '/usr/bin/smtpfrontctl',
			'/etc/smtpfront', '/etc/smtpfront/smtpfront.yaml',
			'/usr/lib/systemd/system/smtpfront.service',
			# issue 18: the fail2ban action, where Fedora's fail2ban looks
			'/etc/fail2ban/action.d/smtpfront.conf',
		}
		self.assertEqual(sorted(want - files), [])
		for page in ('man8/smtpfront.8', 'man8/smtpfrontctl.8', 'man5/smtpfront.yaml.5'):
			self.assertTrue(any(re.fullmatch(r'/usr/share/man/%s(\.\w+)?'
				% re.escape(page), f) for f in files), page)
		allowed = re.compile(r'^(/usr/sbin/smtpfront|/usr/bin/smtpfrontctl|/etc/smtpfront(/.*)?'
			r'|/etc/fail2ban(/action\.d(/smtpfront\.conf)?)?'
			r'|/usr/lib/systemd/system/smtpfront\.service|/usr/share/man/.*'
			r'|/usr/share/(doc|licenses)/smtpfront[^/]*(/.*)?|/usr/lib/\.build-id(/.*)?)$')
		self.assertEqual(sorted(f for f in files if not allowed.match(f)), [],
			'unexpected files in the package')
		# config(noreplace); and only the config and the fail2ban action
		# are config files
		flags = dict(l.split(' ', 1) for l in self._q(
			'--qf', r'[%{FILENAMES} %{FILEFLAGS:fflags}\n]').splitlines())
		self.assertEqual(sorted(f for f, fl in flags.items() if 'c' in fl),
			['/etc/fail2ban/action.d/smtpfront.conf',
			'/etc/smtpfront/smtpfront.yaml'])
		self.assertIn('n', flags['/etc/smtpfront/smtpfront.yaml'], 'not noreplace')
		self.assertIn('n', flags['/etc/fail2ban/action.d/smtpfront.conf'],
			'not noreplace')
		modes = dict(l.split(' ', 1) for l in self._q(
			'--qf', r'[%{FILENAMES} %{FILEMODES:perms}\n]').splitlines())
		self.assertEqual(modes['/usr/sbin/smtpfront'], '-rwxr-xr-x')
		self.assertEqual(modes['/etc/smtpfront/smtpfront.yaml'], '-rw-r--r--')
		with open(os.path.join(pkgharness.SOURCE_ROOT, 'packaging', 'systemd',
				'smtpfront.service')) as f:
			unit = f.read()
		extracted = run(['sh', '-c', 'rpm2cpio "$1" | cpio -i --to-stdout '
			'./usr/lib/systemd/system/smtpfront.service 2>/dev/null', 'sh',
			self.rpm]).stdout
		self.assertEqual(extracted, unit, 'the packaged unit is not '
			'packaging/systemd/smtpfront.service')

	def test_scriptlets(self):
		text = self._q('--scripts')
		parts = dict(re.findall(r'^(\w+) scriptlet \(using /bin/sh\):\n(.*?)'
			r'(?=^\w+ scriptlet|\Z)', text, re.M | re.S))
		self.assertEqual(sorted(parts), ['postinstall', 'postuninstall',
			'preinstall', 'preuninstall'], text)
		pre = parts['preinstall']
		self.assertRegex(pre, r'getent group smtpfront >/dev/null \|\| groupadd -r '
			r'smtpfront')
		# issue 20: the admin level's group of the shipped config
		self.assertRegex(pre, r'getent group smtpfront-admin >/dev/null \|\| '
			r'groupadd -r smtpfront-admin')
		self.assertRegex(pre, r'getent passwd smtpfront >/dev/null \|\|')
		self.assertRegex(pre, r'useradd -r -g smtpfront -d / -s /sbin/nologin')
		# %systemd_post: preset on first install only (the preset disables it
		# on most distributions: nothing binds port 25 unasked)
		self.assertRegex(parts['postinstall'], r'\$1 -eq 1')
		self.assertRegex(parts['postinstall'], r'preset|install-system-units')
		self.assertRegex(parts['preuninstall'], r'\$1 -eq 0')
		self.assertRegex(parts['preuninstall'], r'disable|remove-system-units')
		self.assertRegex(parts['postuninstall'], r'\$1 -ge 1')
		# An upgrade is done in place by the running master (issue 17):
		# %post runs smtpfrontctl upgrade when it is running; nothing
		# restarts it.
		self.assertRegex(parts['postinstall'], r'\$1 -ge 2 \] && \S*smtpfrontctl '
			r'status >/dev/null 2>&1; then\s+\S*smtpfrontctl upgrade')
		for name, body in parts.items():
			self.assertNotRegex(body, r'try-restart|mark-restart|'
				r'systemctl restart', name)
		for name, body in parts.items():
			r = run(['sh', '-n', '-c', body], check=False)
			self.assertEqual(r.returncode, 0, '%s: %s' % (name, r.stdout))
		self.assertIn('shadow-utils', self._q('--requires').split())


if __name__ == '__main__':
	pkgharness.run_tests()
