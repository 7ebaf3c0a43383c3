# SPDX-License-Identifier: MIT
"""The .deb, end to end, as root on a Debian host (CI): build it with
packaging/build-deb.sh, lintian it, install it with apt, check what it put
where, run smtpfront exactly as the installed unit's ExecStart would in
front of a real Postfix (postscreen, postscreen_upstream_proxy_protocol =
haproxy), relay a mail from 127.0.0.55 and find that address in Postfix's
log, reload by SIGHUP and by the unit's ExecReload, ask for status (and,
as throwaway members of group smtpfront and smtpfront-admin, find
smtpfrontctl on their PATH, read, be refused or allowed a drain), stop,
then apt-get purge and check nothing of the package is left.

Skipped (exit 77) when not root, when dpkg-buildpackage or lintian is
missing, or when smtpfront is already installed on this host (the test
would replace and purge it). The Postfix part is skipped when Postfix
cannot run here (not installed because another MTA is: scripts/deps.sh
says so).
"""

import grp
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import sys
import tempfile
import unittest

import pkgharness
import unitfile
from pkgharness import Daemon, free_port, poll_until, run

sys.path.insert(0, pkgharness.E2E_DIR)
import postfixlab  # noqa: E402  (tests/e2e)
from postfixlab import PostfixLab, postfix_available, send_test_mail  # noqa: E402

CONFIG = '/etc/smtpfront/smtpfront.yaml'
UNIT = '/lib/systemd/system/smtpfront.service'
RUNTIME = '/run/smtpfront'
CLIENT = '127.0.0.55'
APT_ENV = dict(os.environ, DEBIAN_FRONTEND='noninteractive')


def installed_version():
	r = run(['dpkg-query', '-W', '-f=${Status} ${Version}', 'smtpfront'], check=False)
	if r.returncode == 0 and r.stdout.startswith('install ok installed'):
		return r.stdout.split()[-1]
	return None


def why_not():
	if os.geteuid() != 0:
		return 'installing a package needs root'
	for tool in ('dpkg-buildpackage', 'dh', 'lintian', 'apt-get'):
		if shutil.which(tool) is None:
			return '%s is not installed (scripts/deps.sh test installs it)' % tool
	if installed_version() is not None:
		return ('smtpfront %s is installed on this host: the test would replace '
			'and purge it' % installed_version())
	return None


@unittest.skipIf(why_not() is not None, why_not() or '')
class Deb(unittest.TestCase):
	@classmethod
	def setUpClass(cls):
		cls.out = tempfile.mkdtemp(prefix='sfdeb-')
		cls.installed = False
		try:
			r = run([os.path.join(pkgharness.SOURCE_ROOT, 'packaging', 'build-deb.sh'),
				cls.out], timeout=900)
			m = re.search(r'^build-deb: (\S+\.deb)$', r.stdout, re.M)
			if m is None:
				raise AssertionError('build-deb.sh named no .deb:\n' + r.stdout[-3000:])
			cls.deb = m.group(1)
			cls.changes = re.sub(r'\.deb$', '.changes', cls.deb)
			cls.version = run(['dpkg-deb', '-f', cls.deb, 'Version']).stdout.strip()
			cls.user_existed = _user_exists()
			run(['apt-get', 'install', '-y', '--no-install-recommends', cls.deb],
				env=APT_ENV, timeout=600)
			cls.installed = True
			cls.files = run(['dpkg', '-L', 'smtpfront']).stdout.split('\n')
		except BaseException:
			cls._purge()
			shutil.rmtree(cls.out, ignore_errors=True)
			raise

	@classmethod
	def _purge(cls):
		if installed_version() is not None or run(['dpkg', '-s', 'smtpfront'],
				check=False).returncode == 0:
			run(['apt-get', 'purge', '-y', 'smtpfront'], env=APT_ENV,
				check=False, timeout=600)

	@classmethod
	def tearDownClass(cls):
		cls._purge()
		shutil.rmtree(cls.out, ignore_errors=True)

	# ---- the package as built ----------------------------------------------------

	def test_1_lintian_reports_no_error(self):
		r = run(['lintian', '--fail-on', 'error', '--pedantic', '-I', self.changes],
			check=False, timeout=600)
		errors = [l for l in r.stdout.splitlines() if l.startswith('E: ')]
		self.assertEqual(errors, [], r.stdout)
		self.assertEqual(r.returncode, 0, r.stdout)
		print('lintian:', r.stdout.strip().replace('\n', '\n  ') or 'clean')

	# ---- installed ---------------------------------------------------------------

	def test_2_user_group_files_conffile(self):
		pw = pwd.getpwnam('smtpfront')
		gr = grp.getgrnam('smtpfront')
		self.assertEqual(pw.pw_gid, gr.gr_gid, 'primary group is not smtpfront')
		self.assertLess(pw.pw_uid, 1000, 'not a system user')
		self.assertIn(pw.pw_shell, ('/usr/sbin/nologin', '/sbin/nologin', '/bin/false'))
		self.assertEqual(pw.pw_dir, '/nonexistent')
		self.assertFalse(os.path.exists(pw.pw_dir))
		# issue 20: the shipped config's control.admin_group, a system group
		self.assertLess(grp.getgrnam('smtpfront-admin').gr_gid, 1000)
		# where SPEC.md "Packaging" says
		for path, mode in (('/usr/sbin/smtpfront', 0o755), ('/usr/bin/smtpfrontctl', 0o755),
				(CONFIG, 0o644), (UNIT, 0o644),
				('/usr/share/man/man8/smtpfront.8.gz', 0o644),
				('/usr/share/man/man8/smtpfrontctl.8.gz', 0o644),
				('/usr/share/man/man5/smtpfront.yaml.5.gz', 0o644),
				('/usr/share/doc/smtpfront/README.Debian', 0o644),
				('/etc/fail2ban/action.d/smtpfront.conf', 0o644),
				('/usr/share/doc/smtpfront/copyright', 0o644)):
			st = os.stat(path)
			self.assertEqual(oct(st.st_mode & 0o7777), oct(mode), path)
			self.assertEqual(st.st_uid, 0, path)
			self.assertIn(path, self.files)
		with open(UNIT) as f, open(unitfile.UNIT_SOURCE) as g:
			self.assertEqual(f.read(), g.read(), 'the installed unit is not '
				'packaging/systemd/smtpfront.service')
		with open(CONFIG, 'rb') as f, open(os.path.join(pkgharness.SOURCE_ROOT,
				'packaging', 'smtpfront.yaml'), 'rb') as g:
			data = f.read()
			self.assertEqual(data, g.read())
		conffiles = run(['dpkg-query', '-W', '-f=${Conffiles}', 'smtpfront']).stdout
		self.assertIn(' %s %s' % (CONFIG, hashlib.md5(data).hexdigest()), conffiles)
		# the fail2ban action, where Debian's fail2ban looks (a conffile)
		with open('/etc/fail2ban/action.d/smtpfront.conf', 'rb') as f, \
				open(os.path.join(pkgharness.SOURCE_ROOT, 'packaging',
				'fail2ban', 'smtpfront.conf'), 'rb') as g:
			action = f.read()
			self.assertEqual(action, g.read())
		self.assertIn(' /etc/fail2ban/action.d/smtpfront.conf %s'
			% hashlib.md5(action).hexdigest(), conffiles)
		# installed, not enabled: nothing binds port 25 before the admin says so
		self.assertEqual([p for p in ('/etc/systemd/system/multi-user.target.wants/'
			'smtpfront.service',) if os.path.lexists(p)], [])
		# the test backend and the e2e tests stay out of the package
		self.assertEqual([f for f in self.files if 'test' in os.path.basename(f)], [])

	def test_3_shipped_config_valid_and_version(self):
		r = run(['/usr/sbin/smtpfront', '-t', '-c', CONFIG], check=False)
		self.assertEqual(r.returncode, 0, r.stdout)
		self.assertIn('configuration is valid', r.stdout)
		self.assertNotRegex(r.stdout, r':\d+:\d+: (?!warning:)', 'errors in the '
			'shipped config')
		r = run(['/usr/sbin/smtpfront', '-V'])
		upstream = re.sub(r'^\d+:', '', self.version).rsplit('-', 1)[0]
		self.assertEqual(r.stdout.strip(), 'smtpfront ' + upstream)

	def test_4_installed_unit_verifies(self):
		analyze = shutil.which('systemd-analyze')
		if analyze is None:
			self.skipTest('systemd-analyze is not installed')
		man = 'yes' if shutil.which('man') else 'no'
		r = run([analyze, 'verify', '--man=' + man, UNIT], check=False)
		self.assertEqual((r.returncode, r.stdout.strip()), (0, ''))

	# ---- running it as the unit would, in front of Postfix -------------------

	def test_5_runs_as_the_unit_in_front_of_postfix(self):
		why = postfix_available()
		if why is not None:
			self.skipTest('Postfix cannot run here: %s' % why)
		unit = unitfile.parse(UNIT)
		argv = unitfile.exec_start(unit)
		self.assertEqual(argv, ['/usr/sbin/smtpfront', '-c', CONFIG])
		reload_argv = [shlex.split(v) for v in unit['Service']['ExecReload']][-1]
		self.assertEqual(reload_argv, ['/usr/bin/smtpfrontctl', 'reload'])
		with open(CONFIG) as f:
			shipped = f.read()
		port = free_port()
		with PostfixLab(free_port(), proxy='haproxy', greet_wait='2s',
				access_list=['127.0.0.1/32', CLIENT + '/32']) as lab:
			config = shipped
			for old, new in (('bind: ["0.0.0.0:25", "[::]:25"]',
					'bind: ["127.0.0.1:%d"]' % port),
					('address: 127.0.0.1:10024', 'address: ' + lab.hostport),
					('target: syslog', 'target: stderr')):
				self.assertIn(old, config, 'the shipped config changed: adapt the test')
				config = config.replace(old, new)
			with open(CONFIG, 'w') as f:
				f.write(config)
			created = not os.path.isdir(RUNTIME)
			if created:     # RuntimeDirectory=smtpfront, as systemd makes it
				os.mkdir(RUNTIME, 0o755)
			try:
				self._run_in_front_of(lab, unit, argv, reload_argv, port, config)
			finally:
				if created:     # smtpfront removed its socket; leave anything else
					try:
						os.rmdir(RUNTIME)
					except OSError:
						pass
				with open(CONFIG, 'w') as f:
					f.write(shipped)

	def _ctl(self, *args):
		return run(['/usr/bin/smtpfrontctl'] + list(args), check=False, timeout=60)

	def _status(self):
		r = self._ctl('status', '--json')
		self.assertEqual(r.returncode, 0, r.stdout)
		return json.loads(r.stdout)

	def _run_in_front_of(self, lab, unit, argv, reload_argv, port, config):
		mark = lab.log_mark()
		uid = pwd.getpwnam('smtpfront').pw_uid
		with Daemon(unitfile.sandbox_argv(unit) + argv, name='smtpfront',
				umask=unitfile.umask(unit)) as sf, postfixlab.logs_on_failure(
				lambda: [], lambda: [('lab', lab)]):
			try:
				master = int(sf.wait_log(r'smtpfront\[(\d+)\]: .*\bready\b', 60).group(1))
				# the master stays root, its children run as smtpfront
				st = poll_until(self._status, lambda s: s['pools'][0]['servers'][0]
					['state'] == 'up', 'Postfix checked up', 60)
				for w in st['workers']:
					self.assertEqual(_uid(w['pid']), uid, 'worker %d' % w['pid'])
				self.assertEqual(_uid(master), 0)
				sock = os.stat(os.path.join(RUNTIME, 'control.sock'))
				self.assertEqual((oct(sock.st_mode & 0o777), sock.st_gid),
					('0o660', grp.getgrnam('smtpfront').gr_gid))

				code, text, cport = send_test_mail('127.0.0.1', port, source=CLIENT)
				self.assertEqual(code, 250, text)
				lab.wait_log(r'postscreen\[\d+\]: CONNECT from \[%s\]:%d to '
					r'\[127\.0\.0\.1\]:%d$' % (re.escape(CLIENT), cport, port), 20, mark)
				qid = re.search(r'queued as (\w+)', text).group(1)
				lab.wait_log(r'smtpd\[\d+\]: %s: client=unknown\[%s\]$'
					% (qid, re.escape(CLIENT)), 20, mark)
				sf.wait_log(r'session client=\[%s\]:%d .*server=postfix/mx1 .*'
					r'proxy=v2 .*result=ok' % (re.escape(CLIENT), cport), 20)

				m = sf.mark()
				os.kill(master, signal.SIGHUP)
				sf.wait_log(r'reload: generation 2 running', 60, m)
				r = run(reload_argv, check=False, timeout=60)    # ExecReload
				self.assertEqual(r.returncode, 0, r.stdout)
				self.assertIn('generation 3', r.stdout)
				# what ExecReload is for: a broken file fails the reload
				with open(CONFIG, 'w') as f:
					f.write(config.replace('balance: source', 'balance: sauce'))
				r = run(reload_argv, check=False, timeout=60)
				self.assertEqual(r.returncode, 1, r.stdout)
				self.assertRegex(r.stdout, re.escape(CONFIG) + r':\d+:\d+: balance: expected one '
					r'of roundrobin, leastconn, source or first, got "sauce"')
				with open(CONFIG, 'w') as f:
					f.write(config)
				self.assertEqual(self._status()['generation'], 3)

				r = self._ctl('status')
				self.assertEqual(r.returncode, 0, r.stdout)
				self.assertIn('pool postfix (source)', r.stdout)
				self.assertRegex(r.stdout, r'\nmx1 +\[127\.0\.0\.1\]:%d +up ' % lab.port)
				print(r.stdout)
				self._levels()
			finally:
				rc = sf.stop(timeout=90)
			self.assertEqual(rc, 0, '\n'.join(sf.logs()[-40:]))
			self.assertFalse(os.path.exists(os.path.join(RUNTIME, 'control.sock')))

	def _levels(self):
		"""issue 20: a member of group smtpfront finds smtpfrontctl on the
		PATH of a login shell and may read; drain needs smtpfront-admin
		too. Throwaway users, removed after."""
		users = pkgharness.throwaway_users(self, {
			'reader': ['smtpfront'],
			'admin': ['smtpfront', 'smtpfront-admin']})
		for user in users.values():
			r = run(['runuser', '-u', user, '--', 'sh', '-lc',
				'command -v smtpfrontctl'], check=False, timeout=60)
			self.assertEqual((r.returncode, r.stdout.strip()),
				(0, '/usr/bin/smtpfrontctl'), user)
		as_reader = ['runuser', '-u', users['reader'], '--', 'sh', '-lc']
		r = run(as_reader + ['smtpfrontctl status'], check=False, timeout=60)
		self.assertEqual(r.returncode, 0, r.stdout)
		self.assertIn('pool postfix (source)', r.stdout)
		r = run(as_reader + ['smtpfrontctl drain postfix/mx1'], check=False,
			timeout=60)
		self.assertEqual(r.returncode, 1, r.stdout)
		self.assertIn('smtpfrontctl: "drain" needs the admin level (group '
			'smtpfront-admin)', r.stdout)
		self.assertEqual(self._status()['pools'][0]['servers'][0]['admin'],
			'ready')
		as_admin = ['runuser', '-u', users['admin'], '--', 'sh', '-lc']
		r = run(as_admin + ['smtpfrontctl drain postfix/mx1'], check=False,
			timeout=60)
		self.assertEqual((r.returncode, r.stdout), (0, 'ok\n'))
		self.assertEqual(self._status()['pools'][0]['servers'][0]['admin'],
			'drain')
		r = run(as_admin + ['smtpfrontctl enable postfix/mx1'], check=False,
			timeout=60)
		self.assertEqual((r.returncode, r.stdout), (0, 'ok\n'))

	# ---- removal -----------------------------------------------------------------

	def test_6_purge_leaves_nothing(self):
		run(['apt-get', 'purge', '-y', 'smtpfront'], env=APT_ENV, timeout=600)
		self.assertIsNone(installed_version())
		r = run(['dpkg-query', '-W', '-f=${Status}', 'smtpfront'], check=False)
		self.assertTrue(r.returncode != 0 or 'not-installed' in r.stdout, r.stdout)
		left = []
		for path in self.files:
			if not path or path == '/.':
				continue
			# directories the package shares with others stay
			if os.path.isdir(path) and not path.startswith(('/etc/smtpfront',
					'/usr/share/doc/smtpfront')):
				continue
			if os.path.lexists(path):
				left.append(path)
		for path in ('/etc/smtpfront', CONFIG, UNIT,
				'/etc/systemd/system/multi-user.target.wants/smtpfront.service',
				'/var/lib/systemd/deb-systemd-helper-enabled/smtpfront.service.dsh-also'):
			if os.path.lexists(path) and path not in left:
				left.append(path)
		self.assertEqual(left, [], 'left behind by apt-get purge')
		# Debian keeps system users on purge (README.Debian says so)
		self.assertTrue(_user_exists(), 'the smtpfront user was removed: '
			'README.Debian says it is kept')


def _user_exists():
	try:
		pwd.getpwnam('smtpfront')
		return True
	except KeyError:
		return False


def _uid(pid):
	with open('/proc/%d/status' % pid) as f:
		for line in f:
			if line.startswith('Uid:'):
				return int(line.split()[2])    # effective
	raise AssertionError('no Uid in /proc/%d/status' % pid)


if __name__ == '__main__':
	pkgharness.run_tests()
