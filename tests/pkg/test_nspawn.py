# SPDX-License-Identifier: MIT
"""The .deb under a real systemd (issue 17): a Debian 12 root made once with
debootstrap from Debian's archive (cached in the build directory,
nspawn/bookworm-root), booted with systemd-nspawn as an ephemeral copy; the
.deb installed in it and run by its unit, in front of the test backend on
the host (the container shares the host's network). Under load (mail
sessions in a loop from a few threads, counting connect errors and failed
sessions):

- (no load) a member of group smtpfront finds smtpfrontctl on its PATH
  and may read `status`, `drain` is refused naming the admin level, and a
  member of smtpfront-admin may drain (issue 20);

- `systemctl restart` refuses no connection (the listening socket waits in
  systemd's file descriptor store while the old instance drains and the new
  one starts);
- `smtpfrontctl upgrade` keeps the unit's main pid;
- `apt-get install` of the same package at a higher version refuses none
  and fails none: postinst upgrades the running master in place (same main
  pid, /proc/PID/exe no longer "(deleted)"), and the new binary serves;
- `systemctl reload` with a broken config fails visibly and the running
  generation goes on;
- `systemctl stop` drains: sessions open at that moment end normally.

The counts are printed. Skipped (exit 77) when not root, when
systemd-nspawn, debootstrap or dpkg-buildpackage is missing, when the root
cannot be made (no network to the archive) or when nspawn cannot boot it
here (the reason is printed).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import pkgharness
from pkgharness import free_port, poll_until, run

os.environ.setdefault('TEST_BACKEND_BIN', os.path.join(
	pkgharness.build_root(), 'tests', 'smtpfront-test-backend'))
sys.path.insert(0, pkgharness.E2E_DIR)
import sfharness  # noqa: E402  (tests/e2e)
from test_upgrade import Load  # noqa: E402

MIRROR = os.environ.get('DEBIAN_MIRROR', 'http://deb.debian.org/debian')
INCLUDE = ('systemd,systemd-sysv,dbus,adduser,libevent-core-2.1-7,'
	'libevent-extra-2.1-7,libyaml-0-2')
TIMEOUT = 60


def missing():
	if os.geteuid() != 0:
		return 'needs root (systemd-nspawn, debootstrap)'
	for tool in ('systemd-nspawn', 'debootstrap', 'dpkg-buildpackage',
			'dpkg-deb', 'nsenter'):
		if shutil.which(tool) is None:
			return '%s is not installed (apt-get install systemd-container ' \
				'debootstrap dpkg-dev)' % tool
	return None


def bookworm_root():
	"""The cached root, made on first use."""
	base = os.path.join(pkgharness.build_root(), 'nspawn')
	root = os.path.join(base, 'bookworm-root')
	if os.path.isfile(os.path.join(root, 'usr', 'lib', 'systemd', 'systemd')):
		return root
	os.makedirs(base, exist_ok=True)
	tmp = root + '.tmp'
	shutil.rmtree(tmp, ignore_errors=True)
	r = run(['debootstrap', '--variant=minbase', '--include=' + INCLUDE,
		'bookworm', tmp, MIRROR], check=False, timeout=1800)
	if r.returncode != 0:
		shutil.rmtree(tmp, ignore_errors=True)
		raise unittest.SkipTest('debootstrap of Debian 12 from %s failed: %s'
			% (MIRROR, r.stdout.strip().splitlines()[-1:] or r.returncode))
	os.rename(tmp, root)
	return root


def higher_version(deb, out):
	"""The same package at version -N+1: what an upgrade installs."""
	tree = os.path.join(out, 'tree')
	run(['dpkg-deb', '-R', deb, tree])
	control = os.path.join(tree, 'DEBIAN', 'control')
	with open(control) as f:
		text = f.read()
	m = re.search(r'^Version: (\S+)-(\d+)$', text, re.M)
	new = '%s-%d' % (m.group(1), int(m.group(2)) + 1)
	with open(control, 'w') as f:
		f.write(text.replace(m.group(0), 'Version: ' + new))
	path = os.path.join(out, 'smtpfront_%s_amd64.deb' % new)
	run(['dpkg-deb', '-b', '--root-owner-group', tree, path])
	shutil.rmtree(tree)
	return path, new


class Container:
	"""An ephemeral boot of root, with host directory share at /mnt/sf."""

	def __init__(self, root, share):
		self.name = 'sftest%d' % os.getpid()
		self.proc = subprocess.Popen(['systemd-nspawn', '--quiet', '-D', root,
			'--ephemeral', '--boot', '--register=no', '--keep-unit',
			'--machine=' + self.name, '--console=pipe',
			'--bind-ro=%s:/mnt/sf' % share], stdin=subprocess.DEVNULL,
			stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
			start_new_session=True)
		self.init = None

	def boot(self):
		"""The container's init pid once it runs; None (and why) if not."""
		deadline = time.monotonic() + TIMEOUT
		while time.monotonic() < deadline:
			if self.proc.poll() is not None:
				return 'systemd-nspawn exited %d: %s' % (self.proc.returncode,
					self.proc.stdout.read()[-2000:].strip())
			kids = run(['pgrep', '-P', str(self.proc.pid)], check=False)
			if kids.stdout.split():
				self.init = int(kids.stdout.split()[0])
				r = self.sh('systemctl is-system-running', check=False)
				if r.stdout.strip() in ('running', 'degraded'):
					return None
			time.sleep(0.2)
		return 'the container did not finish booting within %d s' % TIMEOUT

	def sh(self, cmd, check=True, timeout=300):
		return run(['nsenter', '-t', str(self.init), '-m', '-u', '-i', '-p',
			'--', '/bin/sh', '-c', cmd], check=check, timeout=timeout)

	def main_pid(self):
		return int(self.sh('systemctl show -P MainPID smtpfront').stdout)

	def stop(self):
		if self.proc.poll() is None:
			self.proc.send_signal(signal.SIGTERM)     # nspawn halts the container
			try:
				self.proc.wait(TIMEOUT)
			except subprocess.TimeoutExpired:
				os.killpg(self.proc.pid, signal.SIGKILL)
				self.proc.wait()


CONFIG = '''workers: 2
hostname: sf.test
user: smtpfront
group: smtpfront
shutdown_timeout: 20s
log: {target: stderr, level: info}
control: {socket: /run/smtpfront/control.sock, mode: "0660", group: smtpfront,
  admin_group: smtpfront-admin}
listeners:
  - name: smtp
    bind: ["127.0.0.1:%(port)d"]
    pool: pool
pools:
  pool:
    proxy_protocol: v2
    health: {check: connect}
    servers:
      - {name: b1, address: "127.0.0.1:%(backend)d"}
'''


@unittest.skipIf(missing() is not None, missing() or '')
class RealSystemd(unittest.TestCase):
	@classmethod
	def setUpClass(cls):
		cls.share = tempfile.mkdtemp(prefix='sfnspawn-')
		os.chmod(cls.share, 0o755)
		cls.addClassCleanup(shutil.rmtree, cls.share, True)
		root = bookworm_root()
		r = run([os.path.join(pkgharness.SOURCE_ROOT, 'packaging', 'build-deb.sh'),
			os.path.join(cls.share, 'deb')], timeout=900)
		cls.deb = re.search(r'^build-deb: (\S+\.deb)$', r.stdout, re.M).group(1)
		cls.next_deb, cls.next_version = higher_version(cls.deb, cls.share)
		cls.backend = sfharness.Backend(mode='normal', proxy='v2', name='b1')
		cls.addClassCleanup(cls.backend.stop)
		cls.port = free_port()
		with open(os.path.join(cls.share, 'smtpfront.yaml'), 'w') as f:
			f.write(CONFIG % {'port': cls.port, 'backend': cls.backend.port})
		cls.ct = Container(root, cls.share)
		cls.addClassCleanup(cls.ct.stop)
		why = cls.ct.boot()
		if why is not None:
			raise unittest.SkipTest('systemd-nspawn cannot boot Debian 12 here: '
				+ why)
		inside = '/mnt/sf/' + os.path.relpath(cls.deb, cls.share)
		cls.ct.sh('dpkg -i %s' % inside)
		cls.ct.sh('cp /mnt/sf/smtpfront.yaml /etc/smtpfront/smtpfront.yaml && '
			'systemctl enable --now smtpfront')
		poll_until(lambda: cls.ct.sh('smtpfrontctl status', check=False),
			lambda r: r.returncode == 0, 'smtpfront answering in the container',
			TIMEOUT)

	def under_load(self, action, what):
		"""Run action() with mail sessions going on; print and return the
		load's counts."""
		load = Load(self.port, threads=3)
		try:
			self.assertTrue(load.wait_ok(20, TIMEOUT), load.failures[:3])
			action()
			self.assertTrue(load.wait_ok(20, TIMEOUT), load.failures[:3])
		finally:
			load.stop()
		print('\n%s under load: %d sessions ok, %d failed, %d connect errors'
			% (what, load.ok, len(load.failures), len(load.connect_errors)))
		return load

	def exe(self, pid):
		return self.ct.sh('readlink /proc/%d/exe' % pid).stdout.strip()

	def test_0_levels_and_path(self):
		"""issue 20: a member of group smtpfront finds smtpfrontctl on a
		login shell's PATH and may read; drain needs smtpfront-admin."""
		users = {'reader': 'sftreader', 'admin': 'sftadmin'}
		self.ct.sh('useradd -M -d /nonexistent -s /usr/sbin/nologin -G '
			'smtpfront sftreader && useradd -M -d /nonexistent -s '
			'/usr/sbin/nologin -G smtpfront,smtpfront-admin sftadmin')
		self.addCleanup(self.ct.sh, 'userdel sftreader; userdel sftadmin',
			check=False)

		def as_user(role, cmd):
			return self.ct.sh("runuser -u %s -- sh -lc '%s'" % (users[role],
				cmd), check=False)
		for role in users:
			r = as_user(role, 'command -v smtpfrontctl')
			self.assertEqual((r.returncode, r.stdout.strip()),
				(0, '/usr/bin/smtpfrontctl'), role)
		r = as_user('reader', 'smtpfrontctl status')
		self.assertEqual(r.returncode, 0, r.stdout)
		self.assertIn('pool pool', r.stdout)
		r = as_user('reader', 'smtpfrontctl drain pool/b1')
		self.assertEqual(r.returncode, 1, r.stdout)
		self.assertIn('smtpfrontctl: "drain" needs the admin level (group '
			'smtpfront-admin)', r.stdout)
		r = as_user('admin', 'smtpfrontctl drain pool/b1')
		self.assertEqual((r.returncode, r.stdout.strip()), (0, 'ok'))
		r = as_user('admin', 'smtpfrontctl enable pool/b1')
		self.assertEqual((r.returncode, r.stdout.strip()), (0, 'ok'))

	def test_1_restart_refuses_nothing(self):
		before = self.ct.main_pid()
		load = self.under_load(lambda: self.ct.sh('systemctl restart smtpfront',
			timeout=TIMEOUT), 'systemctl restart')
		self.assertNotEqual(self.ct.main_pid(), before)
		self.assertEqual(load.connect_errors, [])
		log = self.ct.sh('journalctl -u smtpfront -b --no-pager -o cat').stdout
		self.assertRegex(log, r'listening on \[127\.0\.0\.1\]:%d with the socket '
			r'handed over as \[127\.0\.0\.1\]_%d' % (self.port, self.port))

	def test_2_upgrade_keeps_the_main_pid(self):
		before = self.ct.main_pid()
		load = self.under_load(lambda: self.assertIn('ok: generation',
			self.ct.sh('smtpfrontctl upgrade').stdout), 'smtpfrontctl upgrade')
		self.assertEqual(self.ct.main_pid(), before)
		self.assertEqual(load.connect_errors, [])
		self.assertEqual(load.failures, [])

	def test_3_package_upgrade_is_in_place(self):
		before = self.ct.main_pid()
		inside = '/mnt/sf/' + os.path.basename(self.next_deb)
		out = []
		load = self.under_load(lambda: out.append(self.ct.sh(
			'DEBIAN_FRONTEND=noninteractive apt-get install -y '
			'--no-install-recommends %s' % inside, timeout=600).stdout),
			'apt-get install %s' % self.next_version)
		self.assertIn('ok: generation', out[0])
		self.assertEqual(self.ct.main_pid(), before)
		self.assertEqual(self.exe(before), '/usr/sbin/smtpfront')
		self.assertEqual(load.connect_errors, [])
		self.assertEqual(load.failures, [])
		self.assertEqual(self.ct.sh("dpkg-query -W -f '${Version}' smtpfront")
			.stdout, self.next_version)

	def test_4_reload_with_a_broken_config_fails_visibly(self):
		gen = self.ct.sh('smtpfrontctl status').stdout
		self.ct.sh("echo 'no_such_key: 1' >> /etc/smtpfront/smtpfront.yaml")
		r = self.ct.sh('systemctl reload smtpfront', check=False)
		self.ct.sh('cp /mnt/sf/smtpfront.yaml /etc/smtpfront/smtpfront.yaml')
		self.assertNotEqual(r.returncode, 0, r.stdout)
		self.assertEqual(self.ct.sh('systemctl is-active smtpfront').stdout
			.strip(), 'active')
		# The same generation still runs (the first line also says the
		# uptime, which moves on).
		generation = lambda t: re.search(r'generation (\d+)', t).group(1)
		self.assertEqual(generation(self.ct.sh('smtpfrontctl status').stdout),
			generation(gen))

	def test_5_stop_drains(self):
		c = sfharness.smtp_session('127.0.0.1', self.port, timeout=TIMEOUT)
		self.assertEqual(c.ehlo()[0], 250)
		stopper = threading.Thread(target=self.ct.sh, args=(
			'systemctl stop smtpfront',), kwargs={'timeout': 120})
		stopper.start()
		poll_until(lambda: self.ct.sh('systemctl is-active smtpfront',
			check=False).stdout.strip(), lambda s: s != 'active',
			'smtpfront stopping', TIMEOUT)
		# The open session goes on through the drain, and ends as usual.
		self.assertEqual(c.noop()[0], 250)
		self.assertEqual(c.quit()[0], 221)
		stopper.join(120)
		self.assertEqual(self.ct.sh('systemctl is-active smtpfront',
			check=False).stdout.strip(), 'inactive')
		print('\nsystemctl stop: the open session ended with 221')


if __name__ == '__main__':
	pkgharness.run_tests()
