# SPDX-License-Identifier: MIT
"""End-to-end proof of the scale-out chain with real parts: a real HAProxy in front
of smtpfront, a real Postfix behind it, the client address intact from end to end.

  client --> HAProxy (mode tcp, send-proxy-v2 / send-proxy)
         --> smtpfront (accept_proxy: true, trusted_proxies: [127.0.0.1/32])
         --> Postfix postscreen (postscreen_upstream_proxy_protocol = haproxy)

A mail from 127.0.0.55 through HAProxy is accepted and Postfix logs `CONNECT from
[127.0.0.55]:PORT to [127.0.0.1]:HAPROXY_PORT` (the address the client reached,
carried through both headers); the same with HAProxy's v1 header, with its CRC32C
option, and for an IPv6 client (::1). A connection from 127.0.0.66, outside
trusted_proxies, with a forged header is closed and Postfix never hears of it. A
balancer that sends its header and then waits is greeted (no deadlock), also
through postscreen's 220- teaser. Needs root (skipped otherwise, exit 77).
"""

import contextlib
import os
import re
import socket
import sys
import time
import unittest

import postfixlab
import sfharness
from postfixlab import (PostfixLab, have_ipv6_loopback, logs_on_failure,
	postfix_available, send_test_mail)

from sfharness import Haproxy, RawSMTP, Smtpfront, free_port

CLIENT = '127.0.0.55'      # allowlisted in postscreen: no teaser, no greet wait
OUTSIDER = '127.0.0.66'    # not in smtpfront's trusted_proxies
NEW_CLIENT = '192.0.2.77'  # a header's client postscreen has never seen
GREET_WAIT = 2             # seconds, postscreen_greet_wait of the lab
TIMEOUT = 30


def _config(listen_port, server, proxy='v2'):
	# only HAProxy (127.0.0.1) may send headers; health checks reach Postfix as
	# 127.0.0.1 (allowlisted) with a LOCAL header
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
    accept_proxy: true
    trusted_proxies: ["127.0.0.1/32"]
    proxy_timeout: 5s
pools:
  postfix:
    balance: source
    proxy_protocol: {proxy}
    health:
      interval: 30s
      timeout: 10s
    servers:
      - name: lab
        address: {server}
'''.format(port=listen_port, server=server, proxy=proxy)


def _v2_header(src, sport, dst, dport):
	fam = socket.AF_INET6 if ':' in src else socket.AF_INET
	body = (socket.inet_pton(fam, src) + socket.inet_pton(fam, dst)
		+ sport.to_bytes(2, 'big') + dport.to_bytes(2, 'big'))
	return (b'\r\n\r\n\x00\r\nQUIT\n' + bytes([0x21, 0x21 if fam == socket.AF_INET6
		else 0x11]) + len(body).to_bytes(2, 'big') + body)


@unittest.skipIf(postfix_available() is not None, postfix_available() or '')
class PostfixChain(unittest.TestCase):
	@classmethod
	def setUpClass(cls):
		if not os.environ.get('SMTPFRONT_BIN'):
			raise RuntimeError('SMTPFRONT_BIN is not set (run through meson test)')
		cls.ipv6 = have_ipv6_loopback()
		allow = ['127.0.0.1/32', CLIENT + '/32'] + (['::1/128'] if cls.ipv6 else [])
		# inet_protocols = all when ::1 works (postfixlab): TCP6 headers need it
		cls.lab = cls.enterClassContext(PostfixLab(free_port(), proxy='haproxy',
			greet_wait='%ds' % GREET_WAIT, access_list=allow))

	def setUp(self):
		self.sf = None
		self.haproxy = None

	def tearDown(self):
		if self.haproxy is not None:
			self.haproxy.__exit__(None, None, None)
		if self.sf is not None:
			# a clean exit, and no sanitizer report from any child
			rc = self.sf.stop(timeout=TIMEOUT)
			self.sf.__exit__(None, None, None)
			self.assertEqual(rc, 0, 'smtpfront exit %s' % rc)

	@contextlib.contextmanager
	def _explained(self):
		try:
			with logs_on_failure(
					lambda: [('', self.sf)] if self.sf is not None else [],
					lambda: [('', self.lab)]):
				yield
		except BaseException:
			if self.haproxy is not None:
				sys.stderr.write('--- haproxy ---\n%s\n'
					% '\n'.join(self.haproxy.logs()[-20:]))
			raise

	def _chain(self, proxy_out='v2', haproxy='v2', server_opts=''):
		"""smtpfront in front of the lab, HAProxy in front of smtpfront on
		127.0.0.1:P (and [::1]:P6 when IPv6 loopback works)."""
		self.sf_port = free_port()
		self.sf = Smtpfront(_config(self.sf_port, self.lab.hostport, proxy_out))
		self.sf.wait_ready()
		self.sf.wait_log(r'health: server postfix/lab is UP', TIMEOUT)
		self.ha_port = free_port()
		binds = ['127.0.0.1:%d' % self.ha_port]
		if self.ipv6:
			self.ha6_port = _free_port6()
			binds.append('[::1]:%d' % self.ha6_port)
		self.haproxy = Haproxy(self.ha_port, [('sf', self.sf_port)], proxy=haproxy,
			binds=binds, server_opts=server_opts)

	def _assert_mail_from(self, client, client_port, reply, front, mark, proxy_in):
		"""Postfix saw `client` coming to `front` ('[ip]:port' HAProxy listens on)
		and queued its mail; smtpfront's line names the same client."""
		lab = self.lab
		ip = re.escape(client)
		self.assertEqual(reply[0], 250, reply)
		qid = re.search(r'queued as ([0-9A-Za-z]+)', reply[1]).group(1)
		lab.wait_log(r'postscreen\[\d+\]: CONNECT from \[%s\]:%d to %s$'
			% (ip, client_port, re.escape(front)), 10, mark)
		lab.wait_log(r'smtpd\[\d+\]: %s: client=unknown\[%s\]$' % (qid, ip), 10, mark)
		lab.wait_log(r'discard\[\d+\]: %s: to=<user@test\.example>.*status=sent' % qid,
			10, mark)
		# neither HAProxy's nor smtpfront's address ever posed as the client
		self.assertEqual(lab.find_log(r'CONNECT from \[127\.0\.0\.1\]:\d+ to %s$'
			% re.escape(front), mark), [])
		self.assertEqual(lab.find_log(r'client=unknown\[127\.0\.0\.1\]', mark), [])
		self.assertEqual(lab.find_log(r'warning: haproxy read|unrecognized protocol '
			r'header|bad or missing|No system resources', mark), [])
		self.sf.wait_log(r'\bsession client=\[%s\]:%d listener=smtp server=postfix/lab '
			r'backend=\S+ proxy=v2 proxy_in=%s attempts=1 .*\bresult=ok\b'
			% (ip, client_port, proxy_in), 10)

	def _mail_through_haproxy(self, haproxy, server_opts=''):
		mark = self.lab.log_mark()
		with self._explained():
			self._chain(haproxy=haproxy, server_opts=server_opts)
			reply = send_test_mail('127.0.0.1', self.ha_port, source=CLIENT)
			self._assert_mail_from(CLIENT, reply[2], reply[:2],
				'[127.0.0.1]:%d' % self.ha_port, mark, haproxy)

	def test_haproxy_v2_client_reaches_postfix(self):
		self._mail_through_haproxy('v2')

	def test_haproxy_v2_crc32c_client_reaches_postfix(self):
		"""HAProxy's CRC32C TLV is checked by smtpfront and not forwarded."""
		self._mail_through_haproxy('v2', 'proxy-v2-options crc32c')

	def test_haproxy_v1_client_reaches_postfix(self):
		self._mail_through_haproxy('v1')

	def test_ipv6_client_reaches_postfix(self):
		if not self.ipv6:
			self.skipTest('no IPv6 loopback here')
		mark = self.lab.log_mark()
		with self._explained():
			self._chain()
			reply = send_test_mail('::1', self.ha6_port, source='::1')
			self._assert_mail_from('::1', reply[2], reply[:2],
				'[::1]:%d' % self.ha6_port, mark, 'v2')

	def test_forged_header_from_outside_never_reaches_postfix(self):
		mark = self.lab.log_mark()
		with self._explained():
			self._chain()
			c = RawSMTP('127.0.0.1', self.sf_port, source=OUTSIDER, timeout=TIMEOUT)
			c.send(b'PROXY TCP4 203.0.113.66 127.0.0.1 4242 25\r\nEHLO forged.test\r\n')
			data, _ = c.wait_close(TIMEOUT)
			self.assertEqual(data, b'', 'smtpfront said something to an outsider')
			c.close()
			self.sf.wait_log(r'\bsession client=\[%s\]:%d .*\bserver=- .*'
				r'result=untrusted-proxy last_error="untrusted source'
				% (re.escape(OUTSIDER), c.local_port), 10)
			# a good mail afterwards: once Postfix logged it, it would have logged
			# the forged one before
			reply = send_test_mail('127.0.0.1', self.ha_port, source=CLIENT)
			self._assert_mail_from(CLIENT, reply[2], reply[:2],
				'[127.0.0.1]:%d' % self.ha_port, mark, 'v2')
			self.assertEqual(self.lab.find_log(r'203\.0\.113\.66|%s|forged\.test'
				% re.escape(OUTSIDER), mark), [])
			self.assertEqual(len(self.lab.find_log(r'postscreen\[\d+\]: CONNECT from '
				r'\[(?!127\.0\.0\.1\])', mark)), 1)

	def test_balancer_waiting_for_the_greeting_gets_it(self):
		"""HAProxy and a hand-written balancer both send their header and then
		wait: the greeting comes (postscreen's teaser, then its 220)."""
		mark = self.lab.log_mark()
		with self._explained():
			self._chain()
			# through HAProxy: the client says nothing until greeted
			c = RawSMTP('127.0.0.1', self.ha_port, source=CLIENT, timeout=TIMEOUT)
			r = c.read_reply()
			self.assertEqual(r.code, 220, r)
			self.assertIn('ESMTP postfixlab', r.text)
			self.assertEqual(c.cmd('QUIT').code, 221)
			c.close()
			self.lab.wait_log(r'postscreen\[\d+\]: CONNECT from \[%s\]:%d to '
				r'\[127\.0\.0\.1\]:%d$' % (re.escape(CLIENT), c.local_port,
				self.ha_port), 10, mark)
			# a balancer of our own, for a client postscreen does not know: its
			# greeting (220- teaser, then 220) completes after greet_wait
			b = RawSMTP('127.0.0.1', self.sf_port, timeout=TIMEOUT)
			b.send(_v2_header(NEW_CLIENT, 40404, '192.0.2.25', 25))
			t0 = time.monotonic()
			r = b.read_reply()
			self.assertEqual(r.code, 220, r)
			self.assertGreaterEqual(time.monotonic() - t0, GREET_WAIT * 0.75,
				'final 220 before postscreen_greet_wait: not through postscreen?')
			self.assertEqual(b.cmd('QUIT').code, 221)
			b.close()
			self.lab.wait_log(r'postscreen\[\d+\]: CONNECT from \[%s\]:40404 to '
				r'\[192\.0\.2\.25\]:25$' % re.escape(NEW_CLIENT), 10, mark)
			self.sf.wait_log(r'\bsession client=\[%s\]:40404 .*\bproxy_in=v2 .*'
				r'\bresult=ok\b' % re.escape(NEW_CLIENT), 10)


def _free_port6():
	with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
		s.bind(('::1', 0))
		return s.getsockname()[1]


if __name__ == '__main__':
	sfharness.main()
