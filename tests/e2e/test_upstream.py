# SPDX-License-Identifier: MIT
"""Upstream PROXY headers end to end (SPEC.md "Upstream PROXY"): smtpfront
with `accept_proxy: true` behind a balancer played by this test, which
writes PROXY v1/v2 headers itself, in front of the test backend, whose
greeting shows the client address it received.

The scale-out claim: two smtpfront hosts with `balance: source` and the
same servers listed in a different order send each of 1,000 client
networks (700 IPv4 /24, 300 IPv6 /64; a different host of the network
through each) to the same backend. Then the edges: the header's client is
what the backend and the session line see (proxy_in=), a balancer that
waits for the greeting gets it, bytes after the header are kept, LOCAL
passes the real endpoints on as LOCAL, and untrusted sources, malformed
and late headers are closed without a word and logged with their class."""

import concurrent.futures
import ipaddress
import re
import socket
import struct
import time
import unittest

import sfharness as h

TIMEOUT = 15
V2_SIG = b'\r\n\r\n\x00\r\nQUIT\n'
TRUSTED = ['127.0.0.0/8']
SPEC_KEYS = ['client', 'listener', 'server', 'backend', 'proxy', 'proxy_in',
             'attempts', 'connect_ms', 'duration_ms', 'bytes_in', 'bytes_out',
             'result',
             # the session id (README "Logs"), last on the line (after
             # last_error=), so that a parser of SPEC.md's line reads it
             # unchanged
             'sid']


def v2_header(src, sport, dst, dport):
    """A PROXY v2 PROXY/STREAM header for src:sport -> dst:dport."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + struct.pack('!HH', sport, dport)
    return V2_SIG + bytes([0x21, fam]) + struct.pack('!H', len(body)) + body


def v2_local():
    return V2_SIG + bytes([0x20, 0x00, 0x00, 0x00])


def v1_header(src, sport, dst, dport):
    fam = 'TCP4' if ipaddress.ip_address(src).version == 4 else 'TCP6'
    return ('PROXY %s %s %s %d %d\r\n' % (fam, src, dst, sport,
                                          dport)).encode()


_GREETING_RE = re.compile(r'^(\S+) ESMTP test-backend client=(\S+) '
                          r'proxy=(\S+)$')


class Balancer:
    """One connection from 'the balancer' (this test) to smtpfront: the
    header goes out first, then whatever the test says; replies are read
    strictly."""

    def __init__(self, port, header, source='127.0.0.1', host='127.0.0.1'):
        self.c = h.RawSMTP(host, port, source=source, timeout=TIMEOUT)
        if header:
            self.c.send(header)

    def greeting(self):
        """(backend name, client it was told, proxy) from the greeting."""
        r = self.c.read_reply()
        if r.code != 220:
            raise AssertionError('greeting %r' % r)
        m = _GREETING_RE.match(r.lines[0])
        if not m:
            raise AssertionError('not the test backend: %r' % r)
        return m.group(1), m.group(2), m.group(3)

    def quit(self):
        if self.c.cmd('QUIT').code != 221:
            raise AssertionError('QUIT not answered 221')
        data, how = self.c.wait_close(TIMEOUT)
        if (data, how) != (b'', 'eof'):
            raise AssertionError('after QUIT: %r %s' % (data, how))
        self.c.close()


class UpstreamTest(unittest.TestCase):

    # ---------------------------------------------------------- fixtures

    def backend(self, name):
        b = h.Backend(name=name, proxy='v2')
        self.addCleanup(b.stop)
        return b

    def start(self, servers, listener=None, pool=None, workers=2):
        """smtpfront on 127.0.0.1 with accept_proxy, trusted loopback."""
        port = h.free_port()
        lst = {'accept_proxy': True, 'trusted_proxies': TRUSTED}
        lst.update(listener or {})
        pl = {'balance': 'source'}
        pl.update(pool or {})
        cfg = h.make_config(port, servers, listener=lst, pool=pl,
                            health={'check': 'connect', 'interval': '60s'},
                            workers=workers)
        sf = h.Smtpfront(cfg)
        self.addCleanup(sf.stop_checked, self, TIMEOUT)
        sf.wait_ready()
        sf.port = port
        return sf

    def check_spec_line(self, s, proxy_in):
        """The session line has SPEC.md's keys in SPEC.md's order, with
        proxy_in= right after proxy= when a header was read."""
        keys = [k for k in s if k not in ('_tag', 'session', 'last_error')]
        want = [k for k in SPEC_KEYS if k != 'proxy_in' or proxy_in]
        self.assertEqual(keys, want, s)
        self.assertEqual(s.get('proxy_in'), proxy_in, s)

    def silent_close(self, c):
        """smtpfront said nothing and closed (a FIN, or a reset when the
        test's bytes were still unread)."""
        data, _ = c.wait_close(TIMEOUT)
        self.assertEqual(data, b'', 'the client was told something')
        c.close()

    # ---------------------------------------------------------- scale out

    def test_source_balance_agrees_across_hosts(self):
        """1,000 client networks, two smtpfront hosts, servers in another
        order on each: every network reaches the same backend through
        either host."""
        names = ['mx1', 'mx2', 'mx3', 'mx4']
        be = {n: self.backend(n) for n in names}
        host_a = self.start([(n, be[n].port) for n in names])
        host_b = self.start([(n, be[n].port)
                             for n in ['mx3', 'mx1', 'mx4', 'mx2']])
        nets = []
        for i in range(700):
            net = '10.%d.%d' % (i // 200, i % 200)
            nets.append((net + '.1', net + '.200', '192.0.2.25'))
        for i in range(300):
            net = ipaddress.ip_network('2001:db8:%x:%x::/64' % (i // 100,
                                                              i % 100))
            nets.append((str(net[1]), str(net[-2]), '2001:db8::25'))

        def through(host, src, dst, sport):
            b = Balancer(host.port, v2_header(src, sport, dst, 25))
            name, client, proxy = b.greeting()
            b.quit()
            return name, client, proxy

        def one(i):
            a_src, b_src, dst = nets[i]
            sport = 10000 + i
            ra = through(host_a, a_src, dst, sport)
            rb = through(host_b, b_src, dst, sport)
            return i, ra, rb

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(len(nets))))
        took = time.monotonic() - t0
        per = {n: 0 for n in names}
        for i, (na, ca, pa), (nb, cb, pb) in results:
            a_src, b_src, _ = nets[i]
            # the backend was told the header's client, not the balancer
            self.assertEqual((ca, pa), ('[%s]:%d' % (a_src, 10000 + i),
                                        'v2'))
            self.assertEqual((cb, pb), ('[%s]:%d' % (b_src, 10000 + i),
                                        'v2'))
            self.assertEqual(na, nb, 'network of %s went to %s through '
                             'host A, %s through host B' % (a_src, na, nb))
            per[na] += 1
        print('1,000 networks x 2 hosts in %.1f s; per backend: %s'
              % (took, per))
        # rendezvous hashing spreads them (250 each on average)
        for n, k in per.items():
            self.assertGreater(k, 150, per)
        for host, idx in ((host_a, 0), (host_b, 1)):
            lines = host.wait_sessions(len(nets), TIMEOUT,
                                       pred=lambda s: s.get('proxy_in'))
            got = {s['client']: s for s in lines}
            for i, (srcs) in enumerate(nets):
                s = got['[%s]:%d' % (srcs[idx], 10000 + i)]
                self.assertEqual(s['result'], 'ok', s)
            self.check_spec_line(lines[0], 'v2')

    # ---------------------------------------------------------- the client

    def test_header_client_is_the_client(self):
        """v1 and v2, IPv4 and IPv6: the backend and the session line see
        the header's client; a balancer that waits for the greeting (says
        nothing after its header) gets it."""
        b1 = self.backend('mx1')
        sf = self.start([('mx1', b1.port)])
        cases = [(v2_header('203.0.113.7', 51234, '192.0.2.1', 25), 'v2',
                  '[203.0.113.7]:51234'),
                 (v1_header('203.0.113.8', 51235, '192.0.2.1', 25), 'v1',
                  '[203.0.113.8]:51235'),
                 (v2_header('2001:db8::7', 40000, '2001:db8::25', 25), 'v2',
                  '[2001:db8::7]:40000'),
                 (v1_header('2001:db8::8', 40001, '2001:db8::25', 25), 'v1',
                  '[2001:db8::8]:40001'),
                 # a mapped address is the IPv4 client
                 (v2_header('::ffff:198.51.100.9', 40002, '::ffff:192.0.2.1',
                            25), 'v2', '[198.51.100.9]:40002')]
        for header, version, client in cases:
            bal = Balancer(sf.port, header)
            self.assertEqual(bal.greeting(), ('mx1', client, 'v2'))
            bal.quit()
            (s,) = sf.wait_sessions(1, TIMEOUT,
                                    pred=lambda s: s['client'] == client)
            self.assertEqual(s['result'], 'ok', s)
            self.assertEqual(s['bytes_in'], '6', s)    # QUIT\r\n only
            self.check_spec_line(s, version)
        seen = b1.wait_sessions(len(cases), TIMEOUT,
                                pred=lambda s: s['proxy'] == 'v2')
        self.assertEqual(sorted(s['client'] for s in seen),
                         sorted(c for _, _, c in cases))

    def test_ipv6_balancer(self):
        """A balancer that connects over IPv6 to a listener on [::1] and
        trusts ::1/128; an IPv4 client in its header."""
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(('::1', 0))
        except OSError:
            self.skipTest('no IPv6 loopback here')
        b1 = self.backend('mx1')
        port = h.free_port()
        sf = self.start([('mx1', b1.port)],
                        listener={'bind': ['[::1]:%d' % port],
                                  'trusted_proxies': ['::1/128']})
        bal = Balancer(port, v2_header('198.51.100.23', 2323, '192.0.2.25',
                                       25), source='::1', host='::1')
        self.assertEqual(bal.greeting(), ('mx1', '[198.51.100.23]:2323',
                                          'v2'))
        bal.quit()
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual((s['client'], s['proxy_in'], s['result']),
                         ('[198.51.100.23]:2323', 'v2', 'ok'), s)

    def test_bytes_after_header_are_kept(self):
        """The client's first command arrives in the header's packet: the
        gate holds it and the backend gets it after its greeting (its
        reply comes back), never lost."""
        b1 = self.backend('mx1')
        sf = self.start([('mx1', b1.port)])
        bal = Balancer(sf.port, v1_header('203.0.113.9', 5000, '192.0.2.1',
                                          25) + b'EHLO early.test\r\n')
        self.assertEqual(bal.greeting()[1], '[203.0.113.9]:5000')
        r = bal.c.read_reply()
        self.assertEqual((r.code, r.lines[0]), (250, 'mx1'))
        bal.quit()
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['bytes_in'], str(len('EHLO early.test\r\n'
                                                'QUIT\r\n')), s)

    def test_local_header_passes_the_real_endpoints(self):
        """A v2 LOCAL header (a balancer's own check) carries no client:
        the backend gets LOCAL, the line names the balancer's address."""
        b1 = self.backend('mx1')
        sf = self.start([('mx1', b1.port)])
        bal = Balancer(sf.port, v2_local(), source='127.0.0.77')
        name, client, proxy = bal.greeting()
        self.assertEqual((name, proxy), ('mx1', 'local'))
        port = bal.c.local_port
        bal.quit()
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['client'], '[127.0.0.77]:%d' % port, s)
        self.check_spec_line(s, 'v2')

    # ---------------------------------------------------------- refusals

    def test_untrusted_source_is_closed_unseen(self):
        """A forged header from outside trusted_proxies: closed without a
        word, the backend never connected, logged as untrusted-proxy."""
        b1 = self.backend('mx1')
        sf = self.start([('mx1', b1.port)],
                        listener={'trusted_proxies': ['192.0.2.0/24',
                                                      '2001:db8::/32']})
        forged = v1_header('203.0.113.66', 1234, '192.0.2.1', 25)
        c = h.RawSMTP('127.0.0.1', sf.port, source='127.0.0.66',
                      timeout=TIMEOUT)
        c.send(forged + b'EHLO forged.test\r\n')
        self.silent_close(c)
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['result'], 'untrusted-proxy', s)
        self.assertEqual(s['client'], '[127.0.0.66]:%d' % c.local_port, s)
        self.assertEqual(s['server'], '-', s)
        self.assertTrue(s['last_error'].startswith('untrusted source'), s)
        self.assertNotIn('proxy_in', s)
        # the backend only ever saw its health check
        self.assertEqual(b1.sessions(lambda x: x['proxy'] != 'local'), [])

    def test_bad_and_late_headers_are_closed_with_their_class(self):
        b1 = self.backend('mx1')
        sf = self.start([('mx1', b1.port)],
                        listener={'proxy_timeout': '500ms'})
        cases = [
            (b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'not a PROXY header'),
            (b'PROXY TCP4 1.2.3.4 5.6.7.8 01 25\r\n', 'bad address'),
            (b'PROXY TCP4 1.2.3.4 5.6.7.8 1 25\r\n'[:20], 'timeout'),
            (v2_header('1.2.3.4', 1, '5.6.7.8', 25)[:20], 'timeout'),
            (b'', 'timeout'),
        ]
        for data, cls in cases:
            mark = sf.mark()
            c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
            t0 = time.monotonic()
            if data:
                c.send(data)
            self.silent_close(c)
            if cls == 'timeout':
                # proxy_timeout (500 ms), not client_timeout (10 min)
                self.assertLess(time.monotonic() - t0, 3, cls)
            m = sf.wait_log(r'session client=\[127\.0\.0\.1\]:%d .*'
                            r'result=bad-proxy-header last_error="%s: '
                            % (c.local_port, re.escape(cls)), TIMEOUT,
                            since=mark)
            self.assertIn('server=- ', m.string)
            if data:
                self.assertIn('; first bytes: ', m.string)
        self.assertEqual(b1.sessions(lambda x: x['proxy'] != 'local'), [])


if __name__ == '__main__':
    h.main()
