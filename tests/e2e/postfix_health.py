# SPDX-License-Identifier: MIT
"""End-to-end proof against real Postfix: smtpfront's health checks pass postscreen.

Two private Postfix instances run postscreen with the default postscreen_greet_wait
(6 s) and postscreen_upstream_proxy_protocol = haproxy; smtpfront's address
(127.0.0.1) is not in postscreen_access_list and postscreen_greet_ttl is 1 s, so every
check meets the 220- teaser and the full 6 s wait. One smtpfront checks the first
instance with PROXY v2 (LOCAL header), another the second with v1. Over 30 s Postfix
must log every check as a clean pass (PASS NEW, EHLO and QUIT, nothing else); then the
v2 instance is stopped (DOWN within fall x (interval + timeout), clients get 421
4.3.2 at once) and started again (UP, mail flows with the real client address).
Needs root (skipped otherwise, exit 77).
"""

import os
import re
import sys
import time
import unittest

import postfixlab
import sfharness
from postfixlab import (PostfixLab, logs_on_failure, postfix_available,
	send_test_mail)

from sfharness import RawSMTP, Smtpfront, free_port, make_config

CLIENT = '127.0.0.55'   # allowlisted: its mail is not held by the greet wait
GREET_WAIT = 6.0        # Postfix's default postscreen_greet_wait, kept on purpose
WINDOW = 30.0           # seconds of checks to judge
INTERVAL, TIMEOUT, RISE, FALL = 2, 10, 2, 3

# Anything postscreen or smtpd says about a badly behaved client, or about the
# PROXY header, or about a session cut short.
BAD_LOG = (r'PREGREET|COMMAND PIPELINING|HANGUP|NON-SMTP COMMAND|BARE NEWLINE'
	r'|COMMAND TIME LIMIT|COMMAND COUNT LIMIT|COMMAND LENGTH LIMIT|DNSBL'
	r'|PASS OLD|haproxy|protocol header|bad or missing|lost connection'
	r'|timeout after|too many|No system resources|warning:|error:|fatal:|panic:')

CHECK_CONNECT = r'postscreen\[\d+\]: CONNECT from \[127\.0\.0\.1\]:(\d+) to \[127\.0\.0\.1\]:%d$'
CHECK_DISCONNECT = r'smtpd\[\d+\]: disconnect from unknown\[127\.0\.0\.1\]( .*)$'


def _config(listen_port, lab, proxy):
	return make_config(listen_port, [('lab', lab.hostport)], proxy=proxy,
		pool={'greeting_timeout': '10s'},
		health={'interval': '%ds' % INTERVAL, 'timeout': '%ds' % TIMEOUT,
			'rise': RISE, 'fall': FALL},
		workers=1, log={'level': 'debug'})


def _lab(**kw):
	# No postscreen cache: a passed client is forgotten at once, so each check is
	# a new client that meets the teaser and the whole greet wait (PASS NEW).
	return PostfixLab(free_port(), proxy='haproxy', greet_wait=None,
		extra_main={'postscreen_cache_map': ''}, **kw)


@unittest.skipIf(postfix_available() is not None, postfix_available() or '')
class PostfixHealth(unittest.TestCase):
	def setUp(self):
		if not os.environ.get('SMTPFRONT_BIN'):
			raise RuntimeError('SMTPFRONT_BIN is not set (run through meson test)')
		self.labs = {}
		self.sfs = {}
		for proxy, access in (('v2', [CLIENT + '/32']), ('v1', [])):
			self.labs[proxy] = self.enterContext(_lab(access_list=access))

	def _explained(self):
		return logs_on_failure(lambda: self.sfs.items(),
			lambda: self.labs.items())

	def _start_sf(self, proxy):
		port = free_port()
		sf = Smtpfront(_config(port, self.labs[proxy], proxy))
		self.enterContext(sf)
		self.sfs[proxy] = sf
		sf.wait_ready()
		return sf, port

	# ---- phase 1: 30 s of checks against postscreen ----------------------------

	def _check_lines(self, sf, since=0):
		"""smtpfront's completed checks of pool/lab: (ok, reason, ms or None)."""
		out = []
		for line in sf.logs()[since:]:
			m = re.search(r'health: server pool/lab (?:is (UP|DOWN) \((.*)\)$'
				r'|(ok|failed): (.*) \(([\d.]+) ms\)$)', line)
			if m and m.group(1):
				out.append((m.group(1) == 'UP', m.group(2), None))
			elif m:
				out.append((m.group(3) == 'ok', m.group(4), float(m.group(5))))
		return out

	def _judge_window(self, proxy, sf, t_start):
		"""Postfix logged each check of the window as a clean pass."""
		lab = self.labs[proxy]
		remaining = WINDOW - (time.monotonic() - t_start)
		if remaining > 0:
			# the window is a duration: nothing to await but time itself
			time.sleep(remaining)
		# Wait for the check in flight to end: the next one starts `interval` later,
		# so Postfix's log up to its disconnect holds only completed checks.
		n0 = len(self._check_lines(sf))
		sf.wait_log(r'health: server pool/lab (ok|failed|is )', GREET_WAIT + TIMEOUT,
			since=self._line_after(sf, n0))
		checks = self._check_lines(sf)
		n = len(checks)
		self.assertGreaterEqual(n, 3, 'too few checks in %ss: %r' % (WINDOW, checks))
		self.assertTrue(all(ok and reason == 'EHLO ok' for ok, reason, _ in checks),
			checks)
		self.assertEqual(checks[0][:2], (True, 'EHLO ok'))  # the UP line
		sf.wait_log(r'health: server pool/lab is UP \(EHLO ok\)$', 1)
		# Every check waited for postscreen's final 220 (the teaser was not enough).
		# Postfix's timers count whole seconds from a clock read at the top of its
		# event loop: the wait may end up to 1 s early (5002 ms was seen).
		for _, _, ms in checks[1:]:
			self.assertGreaterEqual(ms, (GREET_WAIT - 1) * 1000 * 0.98,
				'a check passed before postscreen_greet_wait: %r' % checks)
			self.assertLess(ms, TIMEOUT * 1000, checks)

		# Postfix's view, up to the n-th checker disconnect
		m = None
		for _ in range(n):
			m = lab.wait_log(CHECK_DISCONNECT, 5, m.end() if m else 0)
		log = lab.log_text()[:m.end()]
		connects = re.findall(CHECK_CONNECT % lab.port, log, re.M)
		self.assertEqual(len(connects), n, 'checks reaching postscreen')
		for port in connects:
			# each check met the teaser and waited it out: a new client every time
			self.assertRegex(log, r'(?m)postscreen\[\d+\]: PASS NEW \[127\.0\.0\.1\]:%s$'
				% port)
		self.assertEqual(len(re.findall(r'postscreen\[\d+\]: PASS NEW ', log)), n)
		self.assertEqual(len(re.findall(
			r'smtpd\[\d+\]: connect from unknown\[127\.0\.0\.1\]$', log, re.M)), n)
		# EHLO and QUIT, accepted, and nothing else
		self.assertEqual(re.findall(CHECK_DISCONNECT, log, re.M),
			[' ehlo=1 quit=1 commands=2'] * n)
		bad = [l for l in log.splitlines() if re.search(BAD_LOG, l)]
		self.assertEqual(bad, [], 'Postfix complained about the checks (%s)' % proxy)
		# the check is the only client: no session of any other address
		self.assertEqual(re.findall(r'CONNECT from \[(?!127\.0\.0\.1\])', log), [])
		return n

	@staticmethod
	def _line_after(sf, n_checks):
		"""Index of the log line after smtpfront's n-th completed check line."""
		seen = 0
		for i, line in enumerate(sf.logs()):
			if re.search(r'health: server pool/lab (ok|failed|is )', line):
				seen += 1
				if seen == n_checks:
					return i + 1
		return 0

	# ---- the scenario ------------------------------------------------------------

	def test_checks_pass_postscreen_then_down_and_up(self):
		with self._explained():
			t_start = time.monotonic()
			sf, sf_port = self._start_sf('v2')
			sf1, _ = self._start_sf('v1')
			# first success from unknown: UP after one check (6 s greet wait)
			for s in (sf, sf1):
				s.wait_log(r'health: server pool/lab is UP \(EHLO ok\)$',
					GREET_WAIT + TIMEOUT)
			n2 = self._judge_window('v2', sf, t_start)
			n1 = self._judge_window('v1', sf1, t_start)
			sf1.__exit__(None, None, None)
			del self.sfs['v1']
			sys.stderr.write('checks in %ss: v2 %d, v1 %d\n' % (WINDOW, n2, n1))
			self._down_and_up(sf, sf_port)

	def _down_and_up(self, sf, sf_port):
		lab = self.labs['v2']
		# Stop while a check waits out postscreen's greet wait. `postfix stop` does
		# not cut it: postscreen drains (a forked child keeps its sessions, without
		# the listener), completes the greeting after the greet wait, cannot hand
		# the session to smtpd any more and answers EHLO with 421 4.3.2. Then the
		# port refuses.
		# A check that starts from now on has its whole greet wait ahead of it.
		lab.wait_log(CHECK_CONNECT % lab.port, INTERVAL + GREET_WAIT + 5,
			lab.log_mark())
		mark = sf.mark()
		t0 = time.monotonic()
		lab.stop()
		t_stopped = time.monotonic() - t0
		bound = FALL * (INTERVAL + TIMEOUT)
		m = sf.wait_log(r'warning: health: server pool/lab is DOWN \((.*)\)$',
			bound + 5, since=mark)
		t_down = time.monotonic() - t0
		sys.stderr.write('postfix stop took %.1fs; DOWN after %.1fs (%s); bound %ds\n'
			% (t_stopped, t_down, m.group(1), bound))
		self.assertLessEqual(t_down, bound)
		self.assertEqual(m.group(1), 'connect: connection refused')
		# fall failures, the first the drained check; one DOWN line
		self.assertEqual([reason for _, reason, _ in self._check_lines(sf, mark)],
			['EHLO answered 421 4.3.2 No system resources']
			+ ['connect: connection refused'] * (FALL - 1))
		self.assertEqual(len([l for l in sf.logs()[mark:] if ' is DOWN ' in l]), 1)

		# a client meets the DOWN pool: 421 at once, and a clean close
		t1 = time.monotonic()
		with RawSMTP('127.0.0.1', sf_port, source=CLIENT, timeout=10) as c:
			r = c.read_reply()
			took = time.monotonic() - t1
			self.assertEqual(r.code, 421, r)
			self.assertRegex(r.text, r'^4\.3\.2 sf\.test Service not available')
			self.assertLess(took, 1.0, '421 was not at once')
			self.assertEqual(c.wait_close(5), (b'', 'eof'))
			port = c.local_port
		sf.wait_sessions(1, 5, lambda s: s.get('client') == '[%s]:%d' % (CLIENT, port)
			and s.get('result') == 'no-backend')

		# back again on the same port: rise successful checks, then mail flows
		mark = sf.mark()
		lab_mark = lab.log_mark()
		lab.start()
		t2 = time.monotonic()
		sf.wait_log(r'health: server pool/lab is UP \(EHLO ok\)$',
			RISE * (INTERVAL + GREET_WAIT) + TIMEOUT, since=mark)
		sys.stderr.write('UP again %.1fs after start\n' % (time.monotonic() - t2))
		self.assertGreaterEqual(len(lab.find_log(
			r'postscreen\[\d+\]: PASS NEW \[127\.0\.0\.1\]:\d+$', lab_mark)), RISE)
		code, text, port = send_test_mail('127.0.0.1', sf_port, source=CLIENT)
		self.assertEqual(code, 250, text)
		lab.wait_log(r'postscreen\[\d+\]: CONNECT from \[127\.0\.0\.55\]:%d to '
			r'\[127\.0\.0\.1\]:%d$' % (port, sf_port), 10, lab_mark)
		qid = re.search(r'queued as (\w+)', text).group(1)
		lab.wait_log(r'smtpd\[\d+\]: %s: client=unknown\[127\.0\.0\.55\]$' % qid, 10,
			lab_mark)
		sf.wait_sessions(1, 10, lambda s: s.get('client') == '[%s]:%d' % (CLIENT, port)
			and s.get('result') == 'ok' and s.get('attempts') == '1')


if __name__ == '__main__':
	sfharness.main()
