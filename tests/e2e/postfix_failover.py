# SPDX-License-Identifier: MIT
"""End-to-end proof against real Postfix: stopping one of two servers under load
costs no client session that smtpfront could have saved.

Two private Postfix instances (postscreen, PROXY v2) form one roundrobin pool behind
smtpfront (2 workers). Eight client threads send mail continuously, each from its own
127.0.0.x address, while one instance is stopped with `postfix stop`. Every session
that starts after the stop must deliver its mail (sessions routed to the dead server
before the health check notices fail over behind the greeting gate: attempts=2); a
session already talking to the stopped Postfix may only fail because that Postfix
cut it. No client ever sees a 421 or a connection failure, and the surviving
instance logs the real client addresses. Needs root (skipped otherwise, exit 77).
"""

import os
import re
import sys
import time
import unittest

import postfixlab
import sfharness
from postfixlab import RELAY_DOMAIN, PostfixLab, logs_on_failure, postfix_available

from sfharness import MailLoad, Smtpfront, free_port, make_config

THREADS = 8
SOURCES = ['127.0.0.%d' % (20 + i) for i in range(THREADS)]
BEFORE_STOP = 20        # ok sessions per server before the stop
AFTER_STOP = 150        # sessions started after the stop completed
AFTER_DOWN = 2.0        # seconds of load after the DOWN line, at least
BODY = ('From: <load@client.test>\r\nTo: <user@%s>\r\nSubject: failover\r\n\r\n'
	'hello\r\n' % RELAY_DOMAIN)


def _config(listen_port, labs):
	return make_config(listen_port, [(n, lab.hostport) for n, lab in labs],
		proxy='v2', retries=2, workers=2,
		pool={'balance': 'roundrobin', 'connect_timeout': '2s',
			'greeting_timeout': '5s'},
		health={'interval': '1s', 'timeout': '3s', 'rise': 2, 'fall': 2})


@unittest.skipIf(postfix_available() is not None, postfix_available() or '')
class PostfixFailover(unittest.TestCase):
	def setUp(self):
		if not os.environ.get('SMTPFRONT_BIN'):
			raise RuntimeError('SMTPFRONT_BIN is not set (run through meson test)')
		self.labs = []
		self.sf = None
		self.load = None
		for name in ('mx1', 'mx2'):
			# the proxy and the clients are permitted: no teaser, fast sessions
			lab = self.enterContext(PostfixLab(free_port(),
				proxy='haproxy', access_list=['127.0.0.0/8']))
			self.labs.append((name, lab))

	def tearDown(self):
		if self.load is not None:
			self.load.stop()

	def _explained(self):
		return logs_on_failure(
			lambda: [('', self.sf)] if self.sf is not None else [],
			lambda: self.labs)

	def test_stop_one_server_under_load(self):
		with self._explained():
			self._scenario()

	def _scenario(self):
		(n1, mx1), (n2, mx2) = self.labs
		sf_port = free_port()
		self.sf = sf = self.enterContext(
			Smtpfront(_config(sf_port, self.labs)))
		sf.wait_ready()
		for n in (n1, n2):
			sf.wait_log(r'health: server pool/%s is UP \(EHLO ok\)$' % n, 10)
		banner = {n1: 'lab%d.' % mx1.port, n2: 'lab%d.' % mx2.port}

		def served_by(rec):
			for n, b in banner.items():
				if rec['banner'] and rec['banner'].startswith(b):
					return n
			return None

		self.load = load = MailLoad(sf_port, SOURCES, BODY, 'user@' + RELAY_DOMAIN)
		load.start()
		self.assertTrue(load.wait(lambda rs: all(
			sum(1 for r in rs if r['ok'] and served_by(r) == n) >= BEFORE_STOP
			for n in (n1, n2)), 30), 'both servers did not serve the load')

		mark = sf.mark()
		t_stop0 = time.monotonic()
		mx2.stop()
		t_stop1 = time.monotonic()
		m = sf.wait_log(r'warning: health: server pool/%s is DOWN \((.*)\)$' % n2, 15,
			since=mark)
		t_down = time.monotonic()
		self.assertTrue(load.wait(lambda rs: sum(1 for r in rs if r['t0'] >= t_stop1)
			>= AFTER_STOP and time.monotonic() - t_down >= AFTER_DOWN, 60),
			'the load stalled after the stop')
		self.assertTrue(load.stop(), 'client threads hung')
		recs = load.records
		sys.stderr.write('%d sessions; stop took %.2fs; DOWN (%s) %.2fs after it\n'
			% (len(recs), t_stop1 - t_stop0, m.group(1), t_down - t_stop0))

		# one smtpfront session line per client session, joined by the client port
		sf.wait_sessions(len(recs), 30)
		lines = {}
		for s in sf.sessions():
			lines.setdefault(s['client'], []).append(s)
		for r in recs:
			key = '[%s]:%d' % (r['src'], r['port'])
			self.assertEqual(len(lines.get(key, [])), 1, (r, lines.get(key)))
			r['line'] = lines[key][0]

		# No client saw smtpfront's 421 or a failed connection: every session got a
		# 220 greeting from one of the two instances.
		for r in recs:
			self.assertEqual(r['replies'][:1], [220],
				"a client saw smtpfront's 421 or lost the connection: %r" % r)
			self.assertIsNotNone(served_by(r), r)

		# Sessions started after the stop completed: all delivered, on mx1.
		after = [r for r in recs if r['t0'] >= t_stop1]
		bad = [r for r in after if not r['ok'] or served_by(r) != n1
			or r['line']['result'] != 'ok' or r['line']['server'] != 'pool/' + n1]
		self.assertEqual(bad, [], 'sessions started after the stop failed')

		# Sessions in flight at the stop: delivered, or cut by the stopped Postfix
		# after its own greeting: `postfix stop` terminates its smtpd processes, the
		# client loses the connection (no reply), and smtpfront, which relays the
		# server's close as it is, logs the session as mx2's: server-closed, since
		# Postfix went away without its 221 (the dialog smtpfront follows says
		# so, whether Postfix's close was a FIN or a reset).
		before = [r for r in recs if r['t0'] < t_stop1]
		cut = [r for r in before if not r['ok']]
		# (A session still inside postscreen would be drained instead: postscreen
		# cannot hand it to smtpd any more and answers 421 4.3.2 No system
		# resources after its own 220; that too is the stopped Postfix speaking.)
		for r in cut:
			self.assertEqual(served_by(r), n2, r)
			self.assertEqual(r['line']['server'], 'pool/' + n2, r)
			self.assertEqual(r['line']['result'], 'server-closed', r)
			self.assertIn('last_error', r['line'], r)
			if r['refused']:
				self.assertEqual(r['replies'][-1], 421, r)
			else:
				self.assertRegex(r['error'], r'SMTPServerDisconnected|'
					r'ConnectionResetError|BrokenPipeError', r)
			self.assertGreaterEqual(r['t1'], t_stop0, 'failed before the stop: %r' % r)
		for r in before:
			if r['ok']:
				self.assertEqual(r['line']['result'], 'ok', r)

		# Failover behind the greeting gate: new sessions that were sent to the
		# stopped server before health noticed went on to mx1 unseen.
		failovers = [r for r in recs if r['line'].get('attempts') == '2']
		for r in failovers:
			self.assertTrue(r['ok'], r)
			self.assertEqual(r['line']['server'], 'pool/' + n1, r)
			self.assertGreaterEqual(r['t0'], t_stop0 - 1, r)
		self.assertGreaterEqual(len(failovers), 1, 'no session failed over')
		self.assertTrue(all(r['line'].get('attempts') in ('1', '2') for r in recs))
		sys.stderr.write('in flight at the stop: %d, delivered %d, cut by Postfix %d '
			'(stages %s, results %s); failed over (attempts=2): %d; last_error %s\n' % (
			len([r for r in before if r['t1'] > t_stop0]),
			len([r for r in before if r['t1'] > t_stop0 and r['ok']]), len(cut),
			sorted({r['stage'] for r in cut}),
			sorted({r['line']['result'] for r in cut}), len(failovers),
			sorted({r['line'].get('last_error', '') for r in failovers})))

		# mx1 saw each of its clients' real address and port, never the proxy's
		for r in recs:
			if served_by(r) == n1:
				mx1.wait_log(r'postscreen\[\d+\]: CONNECT from \[%s\]:%d to '
					r'\[127\.0\.0\.1\]:%d$' % (re.escape(r['src']), r['port'], sf_port), 10)
		self.assertEqual(mx1.find_log(
			r'CONNECT from \[127\.0\.0\.1\]:\d+ to \[127\.0\.0\.1\]:%d$' % sf_port), [])
		self.assertEqual(mx1.find_log(r'warning: haproxy|unrecognized protocol header'
			r'|bad or missing|No system resources'), [])
		mails = len([r for r in recs if r['mail_ok'] and served_by(r) == n1])
		# each accepted mail's queue file records its real client (postlogd may lag)
		m = None
		for _ in range(mails):
			m = mx1.wait_log(r'smtpd\[\d+\]: \w+: client=unknown\[127\.0\.0\.\d+\]$',
				10, m.end() if m else 0)
		got = mx1.find_log(r'smtpd\[\d+\]: \w+: client=unknown\[(127\.0\.0\.\d+)\]$')
		self.assertEqual(len(got), mails)
		self.assertEqual({g.group(1) for g in got}, set(SOURCES))


if __name__ == '__main__':
	sfharness.main()
