# SPDX-License-Identifier: MIT
"""The greeting gate (SPEC.md "Greeting-gated failover", "No backend"):
a backend that greets 421 4.3.x, never greets or hangs up is skipped and
the client only ever sees the good server's greeting; the backend's own
decisions (421 4.7.0, 554) reach the client unchanged; with every server bad
the client gets 421 4.3.2 and a clean EOF; early client bytes are held (at
most 4 KiB read) and delivered after the first line, never lost; a `tls`
listener has no gate and no 421.

Health is `check: connect` with a long interval: a backend that greets 421
still accepts TCP, so every server stays usable and the gate alone decides.
`balance: first` makes the order of attempts the configuration order."""

import select
import threading
import time
import unittest

import sfharness as h

TIMEOUT = 15
BUSY = '4.3.2 sf.test Service not available, try again later'


def tcp_queues(port_a, port_b):
    """{(local port, remote port): (tx_queue, rx_queue)} of the IPv4 TCP
    sockets between port_a and port_b (both directions), from /proc."""
    out = {}
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            fields = line.split()
            lport = int(fields[1].split(':')[1], 16)
            rport = int(fields[2].split(':')[1], 16)
            if {lport, rport} == {port_a, port_b}:
                tx, rx = (int(x, 16) for x in fields[4].split(':'))
                out[(lport, rport)] = (tx, rx)
    return out


class GateTest(unittest.TestCase):

    # ---------------------------------------------------------- fixtures

    def backend(self, mode, name, **kw):
        kw.setdefault('proxy', 'v2')
        b = h.Backend(mode=mode, name=name, **kw)
        self.addCleanup(b.stop)
        return b

    def start(self, servers, mode='smtp', greeting_timeout='5s', retries=2,
              **pool):
        """smtpfront on servers = [(name, port)] in that order."""
        port = h.free_port()
        pl = {'balance': 'first', 'greeting_timeout': greeting_timeout}
        pl.update(pool)
        cfg = h.make_config(port, servers, retries=retries,
                            listener={'mode': mode}, pool=pl,
                            health={'check': 'connect', 'interval': '60s'})
        sf = h.Smtpfront(cfg)
        self.addCleanup(sf.stop_checked, self, TIMEOUT)
        sf.wait_ready()
        sf.port = port
        return sf

    def client(self, sf):
        c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        return c

    def finish(self, c):
        self.assertEqual(c.cmd('EHLO client.test').code, 250)
        self.assertEqual(c.cmd('QUIT').code, 221)
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()

    def failover(self, mode, **cfg):
        """A `mode` backend first, a good one second: the client sees the
        good greeting first; returns (session line, seconds to greeting)."""
        bad = self.backend(mode, 'bad')
        good = self.backend('normal', 'good')
        sf = self.start([('bad', bad.port), ('good', good.port)], **cfg)
        t0 = time.monotonic()
        c = self.client(sf)
        r = c.read_reply()
        waited = time.monotonic() - t0
        self.assertEqual(r.code, 220, r)
        self.assertTrue(r.lines[0].startswith('good ESMTP'), r)
        self.finish(c)
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['server'], 'pool/good', s)
        self.assertEqual(s['attempts'], '2', s)
        self.assertEqual(s['result'], 'ok', s)
        self.assert_tried(bad, c)
        return s, waited

    def assert_tried(self, b, c):
        """Backend b saw a session of client c (besides the one check)."""
        if b.mode == 'close':        # hangs up before reading the header
            b.wait_sessions(2, TIMEOUT)
            return
        (bs,) = b.wait_sessions(1, TIMEOUT,
                                pred=lambda x: x['proxy'] == 'v2')
        self.assertEqual(bs['client'], '[127.0.0.1]:%d' % c.local_port)

    def relayed(self, mode, code, text):
        """A `mode` backend first: its first line is the client's answer."""
        bad = self.backend(mode, 'bad')
        good = self.backend('normal', 'good')
        sf = self.start([('bad', bad.port), ('good', good.port)])
        c = self.client(sf)
        r = c.read_reply()
        self.assertEqual((r.code, r.text), (code, text))
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['server'], 'pool/bad', s)
        self.assertEqual(s['attempts'], '1', s)
        self.assertNotEqual(s['result'], 'no-backend', s)
        self.assertEqual(good.sessions(lambda x: x['proxy'] == 'v2'), [])

    # ---------------------------------------------------------- failover

    def test_greeting_421_432_fails_over(self):
        s, _ = self.failover('greet-421')
        self.assertIn('greeting 421 4.3.2', s.get('last_error', ''), s)

    def test_no_greeting_fails_over_after_greeting_timeout(self):
        s, waited = self.failover('no-greet', greeting_timeout='500ms')
        self.assertGreaterEqual(waited, 0.5)
        self.assertLess(waited, 4.0)
        self.assertIn('timeout waiting for greeting', s.get('last_error', ''),
                      s)

    def test_close_before_greeting_fails_over(self):
        s, _ = self.failover('close')
        self.assertIn('closed before greeting', s.get('last_error', ''), s)

    # ---------------------------------------------------------- relayed

    def test_greeting_421_470_is_relayed(self):
        self.relayed('greet-421-client', 421,
                     '4.7.0 Error: too many connections from 127.0.0.1')

    def test_greeting_554_is_relayed(self):
        self.relayed('greet-554', 554,
                     '5.7.1 Service unavailable; client blocked')

    # ---------------------------------------------------------- no backend

    def test_every_server_bad_gives_421_and_clean_eof(self):
        bs = [self.backend('greet-421', 'b421'),
              self.backend('close', 'bclose'),
              self.backend('no-greet', 'bsilent')]
        sf = self.start([(b.name, b.port) for b in bs],
                        greeting_timeout='500ms')
        c = self.client(sf)
        r = c.read_reply()
        self.assertEqual((r.code, r.text), (421, BUSY))
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        (s,) = sf.wait_sessions(1, TIMEOUT)
        # Each server took the connection and failed at the gate.
        self.assertEqual(s['result'], 'greeting-failed', s)
        self.assertEqual(s['attempts'], '3', s)
        self.assertEqual(s['server'], '-', s)
        # Every attempt is named, not only the first.
        for why in ('pool/b421: greeting 421 4.3.2',
                    'pool/bclose: connection closed before greeting',
                    'pool/bsilent: timeout waiting for greeting'):
            self.assertIn(why, s.get('last_error', ''), s)
        for b in bs:
            self.assert_tried(b, c)

    def test_retries_bound_the_attempts(self):
        bs = [self.backend('greet-421', 'b1'), self.backend('greet-421', 'b2')]
        good = self.backend('normal', 'good')
        sf = self.start([(b.name, b.port) for b in bs] +
                        [('good', good.port)], retries=1)
        c = self.client(sf)
        r = c.read_reply()
        self.assertEqual((r.code, r.text), (421, BUSY))
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual((s['result'], s['attempts']), ('greeting-failed', '2'),
                         s)
        self.assertEqual(good.sessions(lambda x: x['proxy'] == 'v2'), [])

    # ---------------------------------------------------------- early bytes

    def test_early_bytes_reach_a_teasing_backend_after_its_first_line(self):
        """Postscreen must see a pregreeting client: the bytes go out
        right after the 220- teaser, while the backend still waits."""
        b = self.backend('teaser', 'teaser', teaser_ms=1000)
        sf = self.start([('teaser', b.port)])
        c = self.client(sf)
        c.send('EHLO x\r\n')
        r = c.read_reply()
        self.assertEqual(r.code, 220, r)
        self.assertEqual(r.lines[0], 'teaser ESMTP teaser')
        self.assertEqual(len(r.lines), 2, r)
        self.assertEqual(c.read_reply().code, 250)      # the early EHLO
        self.assertEqual(c.cmd('QUIT').code, 221)
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        (s,) = b.wait_sessions(1, TIMEOUT, pred=lambda x: x['proxy'] == 'v2')
        self.assertEqual(s.get('pregreet'), 'yes', s)
        self.assertEqual(s['client'], '[127.0.0.1]:%d' % c.local_port)

    def test_early_bytes_are_held_until_the_first_line(self):
        """A backend that says nothing for a second: the early bytes must
        not reach it before its greeting (no pregreet on its side)."""
        b = self.backend('slow-greet', 'slow', teaser_ms=1000)
        sf = self.start([('slow', b.port)])
        c = self.client(sf)
        c.send('EHLO x\r\n')
        r = c.read_reply()
        self.assertEqual(r.code, 220, r)
        self.assertEqual(c.read_reply().code, 250)
        self.assertEqual(c.cmd('QUIT').code, 221)
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        (s,) = b.wait_sessions(1, TIMEOUT, pred=lambda x: x['proxy'] == 'v2')
        self.assertNotIn('pregreet', s)

    def test_64k_before_greeting_is_held_at_4k_and_not_lost(self):
        b = self.backend('slow-greet', 'slow', teaser_ms=1500)
        sf = self.start([('slow', b.port)])
        n = 10923                                 # 64 KiB of NOOP lines
        blast = b'NOOP\r\n' * n
        c = self.client(sf)
        sender = threading.Thread(target=c.sock.sendall, args=(blast,),
                                  daemon=True)
        sender.start()
        # Until the greeting arrives, everything not read by smtpfront is
        # in its receive queue or still in our send queue.
        most = -1
        while True:
            r, _, _ = select.select([c.sock], [], [], 0.02)
            if r:
                break
            q = tcp_queues(sf.port, c.local_port)
            if select.select([c.sock], [], [], 0)[0]:
                break                # the sample may be after the gate
            if sender.is_alive() or len(q) != 2:
                continue
            unread = q[(c.local_port, sf.port)][0] + \
                q[(sf.port, c.local_port)][1]
            most = max(most, len(blast) - unread)
        self.assertGreater(most, 0, 'smtpfront read nothing before the '
                           'greeting (or the sample never ran)')
        self.assertLessEqual(most, 4096)
        r = c.read_reply()
        self.assertEqual(r.code, 220, r)
        sender.join(TIMEOUT)
        self.assertFalse(sender.is_alive())
        for i in range(n):
            r = c.read_reply()
            self.assertEqual((r.code, r.text), (250, '2.0.0 Ok'), i)
        self.assertEqual(c.cmd('QUIT').code, 221)
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['result'], 'ok', s)
        self.assertEqual(int(s['bytes_in']), len(blast) + len('QUIT\r\n'))

    # ---------------------------------------------------------- tls

    def test_tls_listener_has_no_gate(self):
        """Implicit TLS: the client speaks first, so its bytes reach the
        backend before the backend has said anything."""
        b = self.backend('slow-greet', 'slow', teaser_ms=1000)
        sf = self.start([('slow', b.port)], mode='tls')
        c = self.client(sf)
        c.send('EHLO x\r\n')
        self.assertEqual(c.read_reply().code, 220)
        self.assertEqual(c.read_reply().code, 250)
        self.assertEqual(c.cmd('QUIT').code, 221)
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        (s,) = b.wait_sessions(1, TIMEOUT, pred=lambda x: x['proxy'] == 'v2')
        self.assertEqual(s.get('pregreet'), 'yes', s)
        self.assertEqual(s['client'], '[127.0.0.1]:%d' % c.local_port)

    def test_tls_listener_without_backend_closes_without_421(self):
        sf = self.start([('dead', h.free_port())], mode='tls')
        c = self.client(sf)
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['result'], 'no-backend', s)


if __name__ == '__main__':
    h.main()
