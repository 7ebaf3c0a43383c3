# SPDX-License-Identifier: MIT
"""End-to-end proof against real Postfix: reloads under load lose no session.

Two private Postfix instances (postscreen, PROXY v2). smtpfront starts with a pool
of mx1 only; ten reloads alternate between that config and one with mx1 and mx2
at other weights (half by SIGHUP, half by `smtpfrontctl reload`) while six client
threads, each from its own 127.0.0.x address, send mail continuously. Every client
session must get a Postfix 220 and deliver its mail, smtpfront logs result=ok for
each, the generation ends at 11, and both Postfix instances log the real client
addresses (mx2 only for sessions of the generations that had it). Needs root
(skipped otherwise, exit 77).
"""

import os
import re
import signal
import subprocess
import sys
import unittest

import postfixlab
import sfharness
from postfixlab import RELAY_DOMAIN, PostfixLab, logs_on_failure, postfix_available

from sfharness import (SMTPFRONTCTL_BIN, MailLoad, Smtpfront, free_port,
	make_config, process_state)

SOURCES = ['127.0.0.%d' % (40 + i) for i in range(6)]
RELOADS = 10
PER_RELOAD = 20         # ok sessions between two reloads, at least
BODY = ('From: <load@client.test>\r\nTo: <user@%s>\r\nSubject: reload\r\n\r\n'
	'hello\r\n' % RELAY_DOMAIN)


def _config(listen_port, servers):
	return make_config(listen_port, servers, proxy='v2', retries=2, workers=2,
		pool={'balance': 'roundrobin'},
		health={'interval': '1s', 'timeout': '3s'})


@unittest.skipIf(postfix_available() is not None, postfix_available() or '')
class PostfixReload(unittest.TestCase):
	def setUp(self):
		if not os.environ.get('SMTPFRONT_BIN') or not SMTPFRONTCTL_BIN:
			raise RuntimeError('SMTPFRONT_BIN/SMTPFRONTCTL_BIN not set '
				'(run through meson test)')
		self.labs = []
		self.sf = None
		self.load = None
		for _ in range(2):
			self.labs.append(self.enterContext(PostfixLab(
				free_port(), proxy='haproxy', access_list=['127.0.0.0/8'])))

	def tearDown(self):
		if self.load is not None:
			self.load.stop()

	def test_reloads_under_load(self):
		with logs_on_failure(
				lambda: [('', self.sf)] if self.sf is not None else [],
				lambda: [(lab.name, lab) for lab in self.labs]):
			self._scenario()

	def _scenario(self):
		mx1, mx2 = self.labs
		port = free_port()
		one = _config(port, [('mx1', mx1.hostport)])
		two = _config(port, [('mx1', mx1.hostport, {'weight': 2}),
			('mx2', mx2.hostport, {'weight': 3})])
		self.sf = sf = self.enterContext(Smtpfront(one))
		sf.wait_ready()
		sf.wait_log(r'health: server pool/mx1 is UP', 10)
		self.load = load = MailLoad(port, SOURCES, BODY, 'user@' + RELAY_DOMAIN)
		load.start()
		for i in range(RELOADS):
			self.assertTrue(load.wait_ok(PER_RELOAD, 60), 'load stalled')
			gen = i + 2
			sf.write_config(two if i % 2 == 0 else one)
			mark = sf.mark()
			if i % 2 == 0:
				os.kill(sf.pid, signal.SIGHUP)
			else:
				ctl = subprocess.Popen([SMTPFRONTCTL_BIN, '-s', sf.control_socket,
					'reload'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
					text=True)
				try:
					out, err = ctl.communicate(timeout=10)
				except subprocess.TimeoutExpired:
					# Still waiting after 10 s: record who holds what.
					state = '\n'.join(process_state(p) for p in
						[sf.pid, ctl.pid] + sf.children())
					ss = subprocess.run(['ss', '-xp'], capture_output=True,
						text=True).stdout
					ss = '\n'.join(l for l in ss.splitlines()
						if 'smtpf' in l or 'control' in l)
					out, err = ctl.communicate(timeout=40)
					self.fail('smtpfrontctl reload: no answer within 10 s '
						'(then rc=%s %s)\n%s\n%s' % (ctl.returncode, err, state, ss))
				r = subprocess.CompletedProcess(ctl.args, ctl.returncode, out, err)
				self.assertEqual(r.returncode, 0, r.stderr)
				self.assertEqual(r.stdout.strip(), 'ok: generation %d' % gen)
			sf.wait_log(r'reload: generation %d running' % gen, 30, since=mark)
		self.assertTrue(load.wait_ok(PER_RELOAD, 60), 'load stalled')
		self.assertTrue(load.stop(), 'client threads hung')
		recs = load.records
		bad = [r for r in recs if not r['ok']]
		self.assertEqual(bad, [], 'sessions failed across reloads')
		sys.stderr.write('%d sessions across %d reloads, none lost\n'
			% (len(recs), RELOADS))

		# One smtpfront line per session, result=ok, on the server it banners.
		sf.wait_sessions(len(recs), 30)
		lines = {s['client']: s for s in sf.sessions()}
		served = {'mx1': 0, 'mx2': 0}
		for r in recs:
			line = lines['[%s]:%d' % (r['src'], r['port'])]
			self.assertEqual(line['result'], 'ok', line)
			name = 'mx1' if r['banner'].startswith('lab%d.' % mx1.port) else 'mx2'
			self.assertEqual(line['server'], 'pool/' + name, (r, line))
			served[name] += 1
		self.assertGreater(served['mx2'], 0, 'mx2 never served after a reload')

		# Each Postfix saw its clients' real addresses and ports.
		for r in recs:
			lab = mx1 if r['banner'].startswith('lab%d.' % mx1.port) else mx2
			lab.wait_log(r'postscreen\[\d+\]: CONNECT from \[%s\]:%d to '
				r'\[127\.0\.0\.1\]:%d$' % (re.escape(r['src']), r['port'], port), 10)
		for lab in (mx1, mx2):
			self.assertEqual(lab.find_log(r'warning: haproxy|unrecognized protocol '
				r'header|bad or missing|No system resources'), [])


if __name__ == '__main__':
	sfharness.main()
