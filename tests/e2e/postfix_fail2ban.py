# SPDX-License-Identifier: MIT
"""Real fail2ban bans at the front door (issue 18).

A private Postfix (postscreen + PROXY v2) sits behind smtpfront. Debian's
fail2ban-server runs in the foreground with a temporary configuration
directory: one jail with Debian's own `postfix` filter on the lab's maillog
and the action smtpfront ships (packaging/fail2ban/smtpfront.conf). A
client from 127.0.0.66 asks Postfix to relay (554 5.7.1 Relay access
denied, which the filter matches); Postfix logs it with the real client
address that smtpfront's PROXY header carried, fail2ban bans it through the
action, and its next connection is refused at smtpfront (421 4.7.1) while
127.0.0.55 is served; after bantime it is served again. Needs root and
fail2ban (skipped otherwise, exit 77).
"""

import json
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time
import unittest

import postfixlab
import sfharness
from postfixlab import PostfixLab, logs_on_failure, postfix_available

from sfharness import (SMTPFRONTCTL_BIN, RawSMTP, Smtpfront, _LineCollector,
	free_port)

BANNED = '127.0.0.66'
GOOD = '127.0.0.55'
BANTIME = 6
FAIL2BAN = shutil.which('fail2ban-server') or '/usr/bin/fail2ban-server'
SOURCE_ROOT = os.environ.get('SMTPFRONT_SOURCE_ROOT',
	os.path.join(os.path.dirname(__file__), '..', '..'))
FILTERS = '/etc/fail2ban/filter.d'


def why_not():
	why = postfix_available()
	if why:
		return why
	if not os.access(FAIL2BAN, os.X_OK):
		return 'fail2ban is not installed'
	if not os.path.exists(os.path.join(FILTERS, 'postfix.conf')):
		return "fail2ban's postfix filter is not installed"
	if not SMTPFRONTCTL_BIN:
		return 'smtpfrontctl not built (SMTPFRONTCTL_BIN)'
	return None


def _config(listen_port, server):
	return '''\
workers: 2
hostname: smtpfront.test
log:
  target: stderr
  level: info
control:
  socket: "@DIR@/control.sock"
listeners:
  - name: smtp
    bind: ["127.0.0.1:{port}"]
    pool: postfix
pools:
  postfix:
    proxy_protocol: v2
    health:
      interval: 30s
      timeout: 10s
    servers:
      - name: lab
        address: {server}
'''.format(port=listen_port, server=server)


class Fail2ban:
	"""fail2ban-server -f with its own configuration directory: Debian's
	postfix filter (and common.conf) copied, the shipped action, one jail."""

	def __init__(self, logpath, socket_path):
		self.dir = tempfile.mkdtemp(prefix='f2btest-')
		for d in ('filter.d', 'action.d'):
			os.mkdir(os.path.join(self.dir, d))
		for f in ('common.conf', 'postfix.conf'):
			shutil.copy(os.path.join(FILTERS, f),
				os.path.join(self.dir, 'filter.d', f))
		shutil.copy(os.path.join(SOURCE_ROOT, 'packaging', 'fail2ban',
			'smtpfront.conf'), os.path.join(self.dir, 'action.d'))
		self.sock = os.path.join(self.dir, 'fail2ban.sock')
		with open(os.path.join(self.dir, 'fail2ban.conf'), 'w') as f:
			f.write('[Definition]\nloglevel = INFO\nlogtarget = STDERR\n'
				'socket = %s\npidfile = %s\ndbfile = :memory:\n' % (
					self.sock, os.path.join(self.dir, 'fail2ban.pid')))
		with open(os.path.join(self.dir, 'jail.conf'), 'w') as f:
			f.write('''\
[DEFAULT]
backend = polling
usedns = no
ignoreip =

[postfix-smtpfront]
enabled = true
filter = postfix[mode=more]
logpath = {log}
maxretry = 2
findtime = 10m
bantime = {bantime}
action = smtpfront[smtpfrontctl="{ctl}", socket="{sock}"]
'''.format(log=logpath, bantime=BANTIME, ctl=SMTPFRONTCTL_BIN,
				sock=socket_path))
		self.proc = subprocess.Popen([FAIL2BAN, '-f', '-x', '-c', self.dir,
			'-s', self.sock, '-p', os.path.join(self.dir, 'fail2ban.pid'),
			'--logtarget', 'STDERR'], stdin=subprocess.DEVNULL,
			stdout=subprocess.PIPE, stderr=subprocess.PIPE,
			start_new_session=True)
		self._err = _LineCollector(self.proc.stderr, 'fail2ban')
		self._out = _LineCollector(self.proc.stdout, 'fail2ban-out')

	def logs(self):
		return self._err.snapshot() + self._out.snapshot()

	def wait_log(self, regex, timeout):
		rx = re.compile(regex)
		if not self._err.wait_for(lambda: any(rx.search(l)
				for l in self._err.lines), timeout):
			raise AssertionError('fail2ban: no line /%s/ in %ss:\n%s' % (
				regex, timeout, '\n'.join(self.logs()[-30:])))

	def stop(self):
		if self.proc.poll() is None:
			self.proc.terminate()
			try:
				self.proc.wait(15)
			except subprocess.TimeoutExpired:
				self.proc.kill()
				self.proc.wait()
		self._err.join()
		self._out.join()
		shutil.rmtree(self.dir, ignore_errors=True)


def first_reply(port, source):
	with RawSMTP('127.0.0.1', port, source=source, timeout=30) as c:
		r = c.read_reply()
		if r.code == 220:
			c.cmd('QUIT')
		return '%d %s' % (r.code, r.lines[0])


@unittest.skipIf(why_not() is not None, why_not() or '')
class PostfixFail2ban(unittest.TestCase):
	def test_fail2ban_bans_at_the_front_door(self):
		lab = PostfixLab(free_port(), proxy='haproxy', greet_wait='1s',
			access_list=['127.0.0.1/32', GOOD + '/32', BANNED + '/32'],
			# the name Debian's filter expects: postfix(-\w+)?/smtpd
			extra_main={'syslog_name': 'postfix-f2btest'})
		self.enterContext(lab)
		port = free_port()
		sf = Smtpfront(_config(port, lab.hostport))
		self.addCleanup(sf.__exit__, None, None, None)
		sf.wait_ready()
		sf.wait_log(r'health: server postfix/lab is UP', 30)
		f2b = Fail2ban(lab.maillog, sf.control_socket)
		self.addCleanup(f2b.stop)
		with logs_on_failure(lambda: [('', sf)], lambda: [('', lab)]):
			try:
				self._run(lab, sf, port, f2b)
			except BaseException:
				print('--- fail2ban ---\n%s' % '\n'.join(f2b.logs()[-40:]))
				raise

	def _run(self, lab, sf, port, f2b):
		f2b.wait_log(r"Jail 'postfix-smtpfront' started", 30)
		self.assertTrue(first_reply(port, GOOD).startswith('220 '))
		# Two relay attempts: Postfix rejects them with the client's own
		# address in its log (smtpfront's PROXY header), the filter
		# matches, maxretry 2 bans.
		mark = lab.log_mark()
		s = smtplib.SMTP(timeout=30, source_address=(BANNED, 0))
		s.connect('127.0.0.1', port)
		s.ehlo('spammer.test')
		self.assertEqual(s.mail('a@spammer.test')[0], 250)
		for rcpt in ('x@elsewhere.example', 'y@elsewhere.example'):
			code, text = s.rcpt(rcpt)
			self.assertEqual(code, 554, text)
			self.assertIn(b'Relay access denied', text)
		s.quit()
		lab.wait_log(r'NOQUEUE: reject: RCPT from unknown\[%s\]' %
			re.escape(BANNED), 15, mark)
		f2b.wait_log(r'\[postfix-smtpfront\] Ban %s' % re.escape(BANNED),
			30)
		ban_seen = time.monotonic()
		sf.wait_log(r'deny: %s added for %d s \(fail2ban:postfix-smtpfront\)'
			% (re.escape(BANNED), BANTIME), 15)
		listed = subprocess.run([SMTPFRONTCTL_BIN, '-s', sf.control_socket,
			'deny', 'list'], capture_output=True, text=True, timeout=15)
		self.assertRegex(listed.stdout, r'%s +\d+s +fail2ban:postfix-'
			r'smtpfront' % re.escape(BANNED))
		# Refused at smtpfront, before Postfix; the other client is served.
		self.assertEqual(first_reply(port, BANNED), '421 4.7.1 smtpfront.test '
			'Service unavailable; client [%s] blocked, try again later'
			% BANNED)
		self.assertTrue(first_reply(port, GOOD).startswith('220 '))
		denied = sf.wait_sessions(1, 15, pred=lambda s: s['result'] ==
			'denied')
		self.assertEqual(denied[0]['server'], '-')
		# After bantime: fail2ban unbans (or the entry expired first) and
		# the client is served again.
		f2b.wait_log(r'\[postfix-smtpfront\] Unban %s' % re.escape(BANNED),
			BANTIME + 20)
		served = None
		while time.monotonic() - ban_seen < BANTIME + 20:
			line = first_reply(port, BANNED)
			if line.startswith('220 '):
				served = time.monotonic() - ban_seen
				break
			time.sleep(0.2)
		print('fail2ban: %s banned through the action, refused at '
			'smtpfront, served again %.1f s after the ban (bantime %d s)'
			% (BANNED, served or -1, BANTIME))
		self.assertIsNotNone(served)
		self.assertGreater(served, BANTIME - 2)
		# The unban found nothing left or removed it: no action error.
		self.assertFalse([l for l in f2b.logs() if 'actionunban' in l and
			'returned' in l and 'ERROR' in l], f2b.logs()[-20:])
		out = subprocess.run([SMTPFRONTCTL_BIN, '-s', sf.control_socket,
			'status', '--json'], capture_output=True, text=True, timeout=15)
		self.assertEqual(json.loads(out.stdout)['deny']['entries'], 0)


if __name__ == '__main__':
	sfharness.main()
