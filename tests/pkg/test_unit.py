# SPDX-License-Identifier: MIT
"""The systemd unit, checked without systemd as PID 1 (as in CI).

- systemd-analyze verify of packaging/systemd/smtpfront.service in a
  throwaway root that holds the built binaries: no message at all (verify
  exits 0 on a misspelt value, so any output fails), and a broken copy
  must be reported (so the check is not blind here).
- systemd-analyze security --offline: the score packaging/README.md gives.
- The hardening against what the daemon does (root, strace): smtpfront
  runs as ExecStart says, under the unit's LimitNOFILE, capability
  bounding set and NoNewPrivileges, binds a port below 1024, relays a
  session whose body is spliced, answers status, reloads twice (workers
  of another uid are signalled: CAP_KILL) and stops with 0; every syscall
  it made is in SystemCallFilter, every socket family in
  RestrictAddressFamilies, every file it wrote is under its runtime
  directory, and /proc was read only below /proc/self or a pid
  (ProcSubset=pid).
"""

import json
import os
import re
import shutil
import smtplib
import tempfile
import unittest

import pkgharness
import unitfile
from pkgharness import Daemon, free_privileged_port, poll_until, run

ANALYZE = shutil.which('systemd-analyze')
README = os.path.join(pkgharness.SOURCE_ROOT, 'packaging', 'README.md')


def system_unit_dir():
	for d in ('/usr/lib/systemd/system', '/lib/systemd/system'):
		if os.path.isfile(os.path.join(d, 'multi-user.target')):
			return d
	return None


@unittest.skipIf(ANALYZE is None, 'systemd-analyze is not installed (apt-get '
	'install systemd: it need not run)')
class UnitFile(unittest.TestCase):
	@classmethod
	def setUpClass(cls):
		units = system_unit_dir()
		if units is None:
			raise unittest.SkipTest('no systemd unit directory with multi-user.target')
		cls.root = tempfile.mkdtemp(prefix='sfunit-')
		shutil.copytree(units, os.path.join(cls.root, 'usr/lib/systemd/system'),
			symlinks=True)
		# where the packages put them (issue 20: smtpfrontctl in /usr/bin,
		# on a group member's PATH)
		for name, where in (('smtpfront', 'usr/sbin'), ('smtpfrontctl', 'usr/bin')):
			os.makedirs(os.path.join(cls.root, where), exist_ok=True)
			shutil.copy(pkgharness.built('cmd', name), os.path.join(cls.root, where))
		cls.etc = os.path.join(cls.root, 'etc/systemd/system')
		os.makedirs(cls.etc)

	@classmethod
	def tearDownClass(cls):
		shutil.rmtree(cls.root, ignore_errors=True)

	def _install(self, text):
		with open(os.path.join(self.etc, 'smtpfront.service'), 'w') as f:
			f.write(text)

	def _verify(self):
		return run([ANALYZE, 'verify', '--man=no', '--root=' + self.root,
			'smtpfront.service'], check=False, timeout=60)

	def test_verify_clean(self):
		with open(unitfile.UNIT_SOURCE) as f:
			self._install(f.read())
		r = self._verify()
		self.assertEqual((r.returncode, r.stdout.strip()), (0, ''),
			'systemd-analyze verify complained about the unit')

	def test_verify_sees_a_broken_unit(self):
		with open(unitfile.UNIT_SOURCE) as f:
			text = f.read()
		for bad in (text.replace('ExecReload=/usr/bin/smtpfrontctl',
				'ExecReload=/usr/bin/smtpfrontctl-missing'),
				text.replace('ProtectSystem=strict', 'ProtectSystem=stricter')):
			self.assertNotEqual(bad, text)
			self._install(bad)
			r = self._verify()
			self.assertTrue(r.returncode != 0 or r.stdout.strip(),
				'verify did not notice a broken unit')

	def test_security_score_is_the_readme_one(self):
		with open(unitfile.UNIT_SOURCE) as f:
			self._install(f.read())
		r = run([ANALYZE, 'security', '--offline=true', '--root=' + self.root,
			'smtpfront.service'], check=False, timeout=60)
		m = re.search(r'Overall exposure level for smtpfront\.service: ([0-9.]+)',
			r.stdout)
		self.assertIsNotNone(m, r.stdout[-2000:])
		score = m.group(1)
		with open(README) as f:
			readme = f.read()
		m2 = re.search(r'systemd-analyze security.*?exposure\s+(?:level\s+)?'
			r'\*{0,2}([0-9.]+)', readme, re.S)
		self.assertIsNotNone(m2, 'packaging/README.md gives no security score')
		self.assertEqual(score, m2.group(1),
			'systemd-analyze security now says %s; update packaging/README.md'
			% score)
		self.assertLessEqual(float(score), 3.0, 'the unit lost hardening')


@unittest.skipIf(os.geteuid() != 0, 'the hardening run needs root (the '
	'master binds a port below 1024 and drops privileges)')
@unittest.skipIf(shutil.which('strace') is None, 'strace is not installed')
@unittest.skipIf(ANALYZE is None, 'systemd-analyze is not installed')
class Hardening(unittest.TestCase):
	"""smtpfront under the unit's sandbox, traced."""

	def setUp(self):
		self.unit = unitfile.parse()
		self.dir = tempfile.mkdtemp(prefix='sfharden-')
		os.chmod(self.dir, 0o755)
		# RuntimeDirectory=smtpfront: systemd creates it (root, 0755)
		self.runtime = os.path.join(self.dir, 'run', 'smtpfront')
		os.makedirs(self.runtime, 0o755)
		self.addCleanup(shutil.rmtree, self.dir, True)

	def _backend(self):
		import sys
		sys.path.insert(0, pkgharness.E2E_DIR)
		os.environ.setdefault('TEST_BACKEND_BIN',
			pkgharness.built('tests', 'smtpfront-test-backend'))
		import sfharness
		return sfharness.Backend(proxy='v2', name='b1')

	def _ctl(self, *args):
		return run([self.ctl, '-s', os.path.join(self.runtime, 'control.sock')]
			+ list(args), check=False, timeout=30)

	def _status(self):
		r = self._ctl('status', '--json')
		self.assertEqual(r.returncode, 0, r.stdout)
		return json.loads(r.stdout)

	def test_daemon_within_the_unit_sandbox(self):
		exe = pkgharness.built('cmd', 'smtpfront')
		self.ctl = pkgharness.built('cmd', 'smtpfrontctl')
		argv = unitfile.exec_start(self.unit)
		self.assertEqual(argv[0], '/usr/sbin/smtpfront')
		port = free_privileged_port()
		backend = self._backend()
		self.addCleanup(backend.stop)
		config = os.path.join(self.dir, 'smtpfront.yaml')
		with open(config, 'w') as f:
			f.write('''\
workers: 2
user: nobody
group: nogroup
hostname: harden.smtpfront.test
log: {target: stderr}
control: {socket: %s/control.sock, mode: "0660", group: nogroup}
listeners:
  - name: smtp
    bind: ["127.0.0.1:%d"]
    pool: p
pools:
  p:
    balance: source
    proxy_protocol: v2
    health: {interval: 1s}
    servers:
      - {name: b1, address: "%s"}
''' % (self.runtime, port, backend.addr))
		# ExecStart with this build's binary and the test's config
		argv = [exe] + [config if a == '/etc/smtpfront/smtpfront.yaml' else a
			for a in argv[1:]]
		trace = os.path.join(self.dir, 'trace')
		cmd = ['strace', '-f', '-qq', '-o', trace] + unitfile.sandbox_argv(
			self.unit) + argv
		with Daemon(cmd, name='smtpfront', umask=unitfile.umask(self.unit)) as sf:
			master = int(sf.wait_log(r'smtpfront\[(\d+)\]: .*\bready\b', 60).group(1))
			poll_until(self._status, lambda s: s['pools'][0]['servers'][0]
				['state'] == 'up', 'backend up', 30)
			body = 'Subject: spliced\r\n\r\n' + ('x' * 998 + '\r\n') * 300
			s = smtplib.SMTP('127.0.0.1', port, timeout=30)
			s.ehlo('client.test')
			s.mail('a@client.test')
			s.rcpt('b@example.org')
			code, text = s.data(body)
			s.quit()
			self.assertEqual(code, 250, text)
			sf.wait_log(r'session client=\[127\.0\.0\.1\]:\d+ .*result=ok', 30)
			r = self._ctl('reload')
			self.assertEqual(r.returncode, 0, r.stdout)
			self.assertIn('generation 2', r.stdout)
			mark = sf.mark()
			os.kill(master, 1)     # SIGHUP
			sf.wait_log(r'reload: generation 3 running', 60, mark)
			poll_until(self._status, lambda s: {w['generation'] for w in
				s['workers']} == {3}, 'only generation 3 workers', 60)
			rc = sf.stop(pid=master)   # strace exits with its status
			self.assertEqual(rc, 0, '\n'.join(sf.logs()[-30:]))
			logs = sf.logs()
		self.assertEqual([l for l in logs if re.search(
			r'Operation not permitted|Permission denied|error:', l)], [])

		names, families, lines = unitfile.read_trace(trace, exe)
		allowed = unitfile.allowed_syscalls(self.unit, unitfile.syscall_groups())
		self.assertIsNotNone(allowed, 'the unit has no SystemCallFilter')
		self.assertIn('splice', names, 'no body was spliced: the trace misses '
			'the path the test means to cover')
		self.assertEqual(sorted(names - allowed), [],
			'syscalls outside SystemCallFilter')
		families_ok = set(unitfile.service(self.unit,
			'RestrictAddressFamilies').split())
		self.assertEqual(sorted(families - families_ok), [],
			'socket families outside RestrictAddressFamilies')
		self.assertTrue({'AF_INET', 'AF_UNIX'} <= families, families)
		writes = []
		for line in lines:
			m = re.search(r'\b(?:open|openat)\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)',
				line)
			if m and re.search(r'O_WRONLY|O_RDWR|O_CREAT', m.group(2)) \
					and '= -1' not in line:
				writes.append(m.group(1))
			m = re.search(r'\b(mkdir|unlink|chown|chmod|rename)\("([^"]+)"', line)
			if m and '= -1' not in line:
				writes.append(m.group(2))
			m = re.search(r'\bbind\(\d+, \{sa_family=AF_UNIX, sun_path="([^"]+)"',
				line)
			if m:
				writes.append(m.group(1))
		outside = [w for w in writes if not (w.startswith(self.runtime) or
			w in ('/dev/null',))]
		self.assertEqual(outside, [], 'files written outside RuntimeDirectory: '
			'ProtectSystem=strict would refuse them')
		self.assertTrue(any(w.startswith(self.runtime) for w in writes))
		procs = set(re.findall(r'"(/proc/[^"]*)"', '\n'.join(lines)))
		self.assertEqual(sorted(p for p in procs if not re.match(
			r'/proc/(self|thread-self|\d+)(/|$)', p)), [],
			'/proc read outside ProcSubset=pid')
		homes = set(re.findall(r'"((?:/home|/root)(?:/[^"]*)?)"', '\n'.join(lines)))
		self.assertEqual(sorted(homes), [], 'ProtectHome=yes hides these')


if __name__ == '__main__':
	pkgharness.run_tests()
