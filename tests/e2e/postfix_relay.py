# SPDX-License-Identifier: MIT
"""End-to-end proof against real Postfix: the real client address reaches postscreen.

One private Postfix (postscreen + postscreen_upstream_proxy_protocol = haproxy) sits
behind smtpfront; a client bound to 127.0.0.55 sends mail through smtpfront with a
PROXY v1 and a v2 pool, and Postfix's own log must show 127.0.0.55, never smtpfront's
127.0.0.1, for those sessions. Bare-LF and BDAT sessions that end without QUIT
after the 250 are result=ok. Needs root (skipped otherwise, exit 77).
"""

import os
import re
import smtplib
import socket
import time
import unittest

import postfixlab
import sfharness
from postfixlab import (PostfixLab, logs_on_failure, postfix_available,
	send_test_mail)

from sfharness import RawSMTP, Smtpfront, free_port

CLIENT = '127.0.0.55'      # allowlisted in postscreen: no teaser, no greet wait
NEW_CLIENT = '127.0.0.66'  # not allowlisted: sees postscreen's 220- teaser
GREET_WAIT = 2             # seconds, postscreen_greet_wait of the lab


def _config(listen_port, server, proxy):
	# health checks reach Postfix too (as 127.0.0.1, allowlisted); a long interval
	# keeps them few while the first one still runs at start
	return '''\
workers: 1
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
    proxy_protocol: {proxy}
    health:
      interval: 30s
      timeout: 10s
    servers:
      - name: lab
        address: {server}
'''.format(port=listen_port, server=server, proxy=proxy)


@unittest.skipIf(postfix_available() is not None, postfix_available() or '')
class PostfixRelay(unittest.TestCase):
	@classmethod
	def setUpClass(cls):
		if not os.environ.get('SMTPFRONT_BIN'):
			raise RuntimeError('SMTPFRONT_BIN is not set (run through meson test)')
		cls.lab = cls.enterClassContext(PostfixLab(free_port(), proxy='haproxy',
			greet_wait='%ds' % GREET_WAIT,
			access_list=['127.0.0.1/32', CLIENT + '/32']))

	def setUp(self):
		self.sf = None

	def tearDown(self):
		if self.sf is not None:
			self.sf.__exit__(None, None, None)  # stop, remove its temp dir

	def _explained(self):
		return logs_on_failure(
			lambda: [('', self.sf)] if self.sf is not None else [],
			lambda: [('', self.lab)])

	def _start_smtpfront(self, proxy):
		self.sf_port = free_port()
		self.sf = Smtpfront(_config(self.sf_port, self.lab.hostport, proxy))
		self.sf.wait_ready()

	def _assert_no_header_trouble(self, mark):
		bad = self.lab.find_log(r'warning: haproxy read|unrecognized protocol header'
			r'|bad or missing|lost connection after CONNECT|No system resources', mark)
		self.assertEqual([m.group(0) for m in bad], [],
			'Postfix refused a PROXY header from smtpfront')

	def _assert_real_client(self, client, client_port, reply, mark, proxy):
		"""Postfix saw `client` (not the proxy) for this session and queued its mail."""
		lab = self.lab
		ip = re.escape(client)
		self.assertEqual(reply[0], 250, reply)
		qid = re.search(r'queued as ([0-9A-Za-z]+)', reply[1])
		self.assertIsNotNone(qid, reply)
		qid = qid.group(1)
		# the header carries the client and the address it connected to (smtpfront's)
		lab.wait_log(r'postscreen\[\d+\]: CONNECT from \[%s\]:%d to \[127\.0\.0\.1\]:%d$'
			% (ip, client_port, self.sf_port), 10, mark)
		lab.wait_log(r'smtpd\[\d+\]: connect from unknown\[%s\]$' % ip, 10, mark)
		lab.wait_log(r'smtpd\[\d+\]: %s: client=unknown\[%s\]$' % (qid, ip), 10, mark)
		lab.wait_log(r'smtpd\[\d+\]: disconnect from unknown\[%s\] .*\bmail=1\b' % ip,
			10, mark)
		lab.wait_log(r'discard\[\d+\]: %s: to=<user@test\.example>.*status=sent' % qid,
			10, mark)
		# Nothing arrived as smtpfront's own address: no session claiming 127.0.0.1
		# at the listener, and no mail from 127.0.0.1 (the only 127.0.0.1 sessions are
		# smtpfront's health checks: CONNECT to Postfix's port, EHLO and QUIT).
		self.assertEqual(lab.find_log(
			r'CONNECT from \[127\.0\.0\.1\]:\d+ to \[127\.0\.0\.1\]:%d$' % self.sf_port,
			mark), [])
		self.assertEqual(lab.find_log(r'client=unknown\[127\.0\.0\.1\]', mark), [])
		self.assertEqual(lab.find_log(
			r'disconnect from unknown\[127\.0\.0\.1\] .*\b(mail|rcpt|data)=', mark), [])
		self._assert_no_header_trouble(mark)
		# smtpfront's session line joins with Postfix's CONNECT line
		self.sf.wait_log(r'\bsession client=\[%s\]:%d .*\bproxy=%s\b.*\bresult=ok\b'
			% (ip, client_port, proxy), 10)

	def _relay_one(self, proxy):
		mark = self.lab.log_mark()
		with self._explained():
			self._start_smtpfront(proxy)
			reply = send_test_mail('127.0.0.1', self.sf_port, source=CLIENT)
			self._assert_real_client(CLIENT, reply[2], reply[:2], mark, proxy)

	def test_v1_real_client_address(self):
		self._relay_one('v1')

	def test_v2_real_client_address(self):
		self._relay_one('v2')

	def _queued_then_hang_up(self, c, reply, mark):
		"""The message was queued and delivered; the client leaves without QUIT:
		every command answered, no message open, so smtpfront says ok."""
		self.assertEqual(reply.code, 250, reply.lines)
		qid = re.search(r'queued as ([0-9A-Za-z]+)', reply.text)
		self.assertIsNotNone(qid, reply.lines)
		c.close()
		self.lab.wait_log(r'discard\[\d+\]: %s: to=<user@test\.example>.*status=sent'
			% qid.group(1), 10, mark)
		s = self.sf.wait_sessions(1, 10, pred=lambda s: s.get('client') ==
			'[%s]:%d' % (CLIENT, c.local_port))[0]
		self.assertEqual(s['result'], 'ok', s)
		return s

	def test_bare_lf_session_and_hang_up(self):
		"""Bare LF line ends in commands and in a 1 MB body: Postfix 3.7 takes
		them (smtpd_forbid_bare_newline = no), the body ends at ".\\n", and
		smtpfront follows it as a body: a hang-up after its 250 is ok."""
		mark = self.lab.log_mark()
		with self._explained():
			self._start_smtpfront('v2')
			c = RawSMTP('127.0.0.1', self.sf_port, source=CLIENT, timeout=30)
			self.addCleanup(c.close)
			self.assertEqual(c.read_reply().code, 220)
			for cmd, code in ((b'EHLO client.test\n', 250),
					(b'MAIL FROM:<sender@client.test>\n', 250),
					(b'RCPT TO:<user@test.example>\n', 250), (b'DATA\n', 354)):
				c.send(cmd)
				self.assertEqual(c.read_reply().code, code, cmd)
			c.send(b'Subject: bare LF\n\n' + (b'b' * 998 + b'\n') * 1000 + b'.\n')
			self._queued_then_hang_up(c, c.read_reply(), mark)
			self._assert_no_header_trouble(mark)

	def test_bdat_last_and_hang_up(self):
		"""BDAT 1048576 LAST with its chunk, Postfix's 250, a hang-up without
		QUIT: ok."""
		mark = self.lab.log_mark()
		with self._explained():
			self._start_smtpfront('v2')
			c = RawSMTP('127.0.0.1', self.sf_port, source=CLIENT, timeout=30)
			self.addCleanup(c.close)
			self.assertEqual(c.read_reply().code, 220)
			ehlo = c.cmd('EHLO client.test')
			self.assertIn('CHUNKING', ehlo.lines)
			self.assertEqual(c.cmd('MAIL FROM:<sender@client.test>').code, 250)
			self.assertEqual(c.cmd('RCPT TO:<user@test.example>').code, 250)
			head = b'Subject: chunked\r\n\r\n'
			line = b'c' * 998 + b'\r\n'
			body = head + line * ((1048576 - len(head)) // len(line))
			body += b'd' * (1048576 - len(body) - 2) + b'\r\n'
			self.assertEqual(len(body), 1048576)
			c.send(b'BDAT 1048576 LAST\r\n' + body)
			self._queued_then_hang_up(c, c.read_reply(), mark)
			self._assert_no_header_trouble(mark)

	def test_v2_postscreen_teaser_passes_through(self):
		"""A new client sees postscreen's 220- at once, its 220 after greet_wait."""
		mark = self.lab.log_mark()
		with self._explained():
			self._teaser_session(mark)

	def _teaser_session(self, mark):
		self._start_smtpfront('v2')
		sock = socket.create_connection(('127.0.0.1', self.sf_port), timeout=30,
			source_address=(NEW_CLIENT, 0))
		client_port = sock.getsockname()[1]
		f = sock.makefile('rb')
		t0 = time.monotonic()
		first = f.readline()
		t1 = time.monotonic()
		self.assertTrue(first.startswith(b'220-'), first)
		self.assertLess(t1 - t0, GREET_WAIT * 0.75, 'teaser held back by smtpfront')
		last = first
		while last[3:4] == b'-':
			last = f.readline()
		self.assertTrue(last.startswith(b'220 '), last)
		self.assertGreaterEqual(time.monotonic() - t0, GREET_WAIT * 0.75,
			'final 220 came before postscreen_greet_wait: not postscreen?')
		s = smtplib.SMTP(timeout=30)
		s.sock, s.file = sock, f
		try:
			s.ehlo('client.test')
			self.assertEqual(s.mail('sender@client.test')[0], 250)
			self.assertEqual(s.rcpt('user@test.example')[0], 250)
			code, text = s.data('Subject: teaser\r\n\r\nhello\r\n')
			s.quit()
		finally:
			s.close()
		self.lab.wait_log(r'postscreen\[\d+\]: PASS NEW \[%s\]:%d$'
			% (re.escape(NEW_CLIENT), client_port), 10, mark)
		self._assert_real_client(NEW_CLIENT, client_port,
			(code, text.decode('utf-8', 'replace')), mark, 'v2')


if __name__ == '__main__':
	sfharness.main()
