# SPDX-License-Identifier: MIT
"""End-to-end relay tests: smtpfront between real SMTP clients and the test
backend. Pipelined sessions arrive byte-exact with the real client address
in the PROXY header (v1 and v2), big messages stream, a dead pool gives a
421 and a clean close, a stalled backend keeps memory bounded, and every
session leaves its log line. SFTEST_FRONT=haproxy runs the same checks
against HAProxy (smtpfront-only checks skip) to validate the tests."""

import re
import threading
import unittest

import sfharness as h

SESSIONS = 200
THREADS = 20
MESSAGES = 3
TIMEOUT = 30


def smtpfront_only(test):
    def wrapper(self):
        if h.FRONT != 'smtpfront':
            self.skipTest('smtpfront-only check (front is %s)' % h.FRONT)
        return test(self)
    wrapper.__name__ = test.__name__
    wrapper.__doc__ = test.__doc__
    return wrapper


class RelayTest(unittest.TestCase):
    bodies = None

    @classmethod
    def setUpClass(cls):
        # A few bodies, generated once: empty-ish, dotted, 8-bit, ~64 KiB.
        sizes = [0, 10, 700, 4000, 20000, 65536]
        cls.bodies = [h.make_body(n, seed=i) for i, n in enumerate(sizes)]
        cls.bodies[0] = b'.\r\n..\r\n.x\r\n'     # only dot lines
        cls.stuffed = [h.dot_stuff(b) for b in cls.bodies]
        cls.hashes = [(len(s), h.fnv1a64(s)) for s in cls.stuffed]

    # ---------------------------------------------------------- fixtures

    def start(self, proxy='v2', modes=('normal',), backend_proxy=None,
              **cfg):
        """Backends (one per mode, named b1, b2, ...) and a front end on a
        free port; everything is stopped at cleanup."""
        backends = []
        for i, mode in enumerate(modes):
            b = h.Backend(mode=mode, proxy=backend_proxy or proxy,
                          name='b%d' % (i + 1))
            self.addCleanup(self.stop_backend, b)
            backends.append(b)
        port = h.free_port()
        servers = [(b.name, b.port) for b in backends]
        if h.FRONT == 'haproxy':
            front = h.Haproxy(port, servers, proxy)
            self.addCleanup(front.__exit__, None, None, None)
        else:
            front = h.Smtpfront(h.make_config(port, servers, proxy=proxy,
                                              **cfg))
            self.addCleanup(self.stop_smtpfront, front)
            front.wait_ready()
        front.port = port
        return front, backends

    def stop_backend(self, b):
        # non-zero: a sanitizer report or a crash in the backend
        rc = b.stop()
        self.assertEqual(rc, 0, 'backend exit %s: %s' % (
            rc, '\n'.join(b.stderr_lines())))

    def stop_smtpfront(self, front):
        try:
            rc = front.stop()
            self.assertEqual(rc, 0, 'smtpfront exit %s on SIGTERM; log:\n%s'
                             % (rc, '\n'.join(front.logs()[-30:])))
        finally:
            front.__exit__(None, None, None)

    def greeting_client(self, reply):
        m = re.search(r'client=\[([^\]]+)\]:(\d+) proxy=(\S+)', reply.text)
        self.assertIsNotNone(m, 'greeting without client=: %r' % reply)
        return m.group(1), int(m.group(2)), m.group(3)

    # ---------------------------------------------------------- sessions

    def one_session(self, port, k, results):
        """One pipelined session of MESSAGES messages; records
        (local_port, greeting, [(expected, got)], sent, received)."""
        with h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT) as c:
            greet = c.read_reply()
            if greet.code != 220:
                raise AssertionError('greeting %r' % greet)
            ehlo = c.cmd('EHLO client%d.test' % k)
            if ehlo.code != 250 or 'PIPELINING' not in ehlo.lines:
                raise AssertionError('EHLO %r' % ehlo)
            checks = []
            for j in range(MESSAGES):
                idx = (k + j) % len(self.bodies)
                _, final, q = h.send_pipelined(
                    c, self.bodies[idx], quit_after=(j == MESSAGES - 1))
                checks.append((self.hashes[idx], h.queued_info(final)))
            if q.code != 221:
                raise AssertionError('QUIT %r' % q)
            data, how = c.wait_close(TIMEOUT)
            if how != 'eof' or data:
                raise AssertionError('after QUIT: %s %r' % (how, data))
            results.append((c.local_port, greet, checks, c.sent_bytes,
                            c.recv_bytes))

    def run_many(self, port):
        results, errors = [], []
        lock = threading.Lock()
        todo = list(range(SESSIONS))

        def worker():
            while True:
                with lock:
                    if not todo:
                        return
                    k = todo.pop()
                try:
                    self.one_session(port, k, results)
                except Exception as e:      # reported below, with its kind
                    with lock:
                        errors.append('session %d: %r' % (k, e))
        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 4)
        self.assertFalse(any(t.is_alive() for t in threads), 'hung clients')
        self.assertEqual(errors, [], '%d failed sessions' % len(errors))
        self.assertEqual(len(results), SESSIONS)
        return results

    def check_many(self, proxy):
        front, backends = self.start(proxy=proxy, modes=('normal', 'normal'))
        results = self.run_many(front.port)
        for lport, greet, checks, _, _ in results:
            ip, cport, p = self.greeting_client(greet)
            self.assertEqual((ip, cport, p), ('127.0.0.1', lport, proxy))
            for expected, got in checks:
                self.assertEqual(expected, got, 'bytes/fnv1a mismatch')

        # The backends' own session lines: the real client endpoint. The
        # greeting names the backend each client reached.
        want = {'[127.0.0.1]:%d' % r[0]: r for r in results}
        per_backend = {b.name: 0 for b in backends}
        for r in results:
            per_backend[r[1].lines[0].split()[0]] += 1
        seen = {}
        for b in backends:
            for s in b.wait_sessions(per_backend[b.name], TIMEOUT,
                                     pred=lambda s: s['client'] in want):
                seen[s['client']] = (b, s)
        self.assertEqual(set(want) - set(seen), set(),
                         'sessions missing from the backend logs')
        for client, (b, s) in seen.items():
            self.assertEqual((s['proxy'], s['messages'], s['result']),
                             (proxy, str(MESSAGES), 'quit'), s)
        used = {b.name for b, _ in seen.values()}
        self.assertEqual(used, {'b1', 'b2'}, 'round robin used one server')

        if h.FRONT != 'smtpfront':
            return
        lines = front.wait_sessions(
            SESSIONS, TIMEOUT, pred=lambda s: s.get('client') in want)
        # A client port can be reused within the run (the server closes
        # first, so the client keeps no TIME_WAIT): compare byte counts per
        # client endpoint as multisets, not one line per endpoint.
        expected, counted = {}, {}
        for r in results:
            expected.setdefault('[127.0.0.1]:%d' % r[0], []).append(
                (r[3], r[4]))
        for s in lines:
            self.check_session_line(s, None, proxy, 'ok')
            counted.setdefault(s['client'], []).append(
                (int(s['bytes_in']), int(s['bytes_out'])))
        for client, want_bytes in expected.items():
            self.assertEqual(sorted(counted.get(client, [])),
                             sorted(want_bytes), client)

    def check_session_line(self, s, backend, proxy, result):
        for key in ('client', 'listener', 'server', 'backend', 'proxy',
                    'attempts', 'bytes_in', 'bytes_out', 'result'):
            self.assertIn(key, s, 'session line without %s=: %r' % (key, s))
        self.assertEqual(s['listener'], 'smtp')
        if backend is None:     # any of the pool's servers
            self.assertRegex(s['server'], r'^pool/b\d+$')
            self.assertRegex(s['backend'], r'^\[127\.0\.0\.1\]:\d+$')
        else:
            self.assertEqual(s['server'], 'pool/%s' % backend.name)
            self.assertEqual(s['backend'],
                             '[127.0.0.1]:%d' % backend.port)
        self.assertEqual(s['proxy'], proxy)
        # proxy_in= only when an upstream header was read (none here)
        self.assertNotIn('proxy_in', s)
        self.assertEqual(s['attempts'], '1')
        self.assertEqual(s['result'], result)
        self.assertRegex(s['bytes_in'], r'^\d+$')
        self.assertRegex(s['bytes_out'], r'^\d+$')

    def test_pipelined_many_v2(self):
        """200 sessions x 3 pipelined messages over PROXY v2."""
        self.check_many('v2')

    def test_pipelined_many_v1(self):
        """The same over PROXY v1."""
        self.check_many('v1')

    # ---------------------------------------------------------- address

    def test_client_source_address(self):
        """A client bound to 127.0.0.55 is greeted as [127.0.0.55]."""
        front, (b,) = self.start(proxy='v2')
        with h.RawSMTP('127.0.0.1', front.port, source='127.0.0.55',
                       timeout=TIMEOUT) as c:
            greet = c.read_reply()
            self.assertEqual(greet.code, 220)
            self.assertEqual(self.greeting_client(greet),
                             ('127.0.0.55', c.local_port, 'v2'))
            self.assertEqual(c.cmd('QUIT').code, 221)
            self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        s = b.wait_sessions(1, TIMEOUT, pred=lambda s: s.get('client') ==
                            '[127.0.0.55]:%d' % c.local_port)
        self.assertEqual(s[0]['result'], 'quit')

    # ---------------------------------------------------------- big message

    def test_big_message(self):
        """A 10 MB message is relayed byte-exact."""
        front, (b,) = self.start(proxy='v2')
        body = h.make_big_body(10 * 1000 * 1000)
        stuffed = h.dot_stuff(body)
        want = (len(stuffed), h.fnv1a64(stuffed))
        with h.RawSMTP('127.0.0.1', front.port, timeout=TIMEOUT) as c:
            self.assertEqual(c.read_reply().code, 220)
            self.assertEqual(c.cmd('EHLO big.test').code, 250)
            _, final, q = h.send_pipelined(c, body, quit_after=True)
            self.assertEqual(final.code, 250, final)
            self.assertEqual(h.queued_info(final), want)
            self.assertEqual(q.code, 221)

    # ---------------------------------------------------------- no backend

    @smtpfront_only
    def test_no_backend(self):
        """Nothing listens: 421 4.3.2, a clean close, result=no-backend."""
        dead = [('dead1', h.free_port()), ('dead2', h.free_port())]
        port = h.free_port()
        front = h.Smtpfront(h.make_config(port, dead, proxy='v2', retries=2))
        self.addCleanup(self.stop_smtpfront, front)
        front.wait_ready()
        with h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT) as c:
            r = c.read_reply()
            self.assertEqual(r.code, 421, r)
            self.assertTrue(r.text.startswith('4.3.2 '), r)
            self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        s = front.wait_sessions(1, TIMEOUT, pred=lambda s: s.get('client') ==
                                '[127.0.0.1]:%d' % c.local_port)[0]
        self.assertEqual(s['result'], 'no-backend', s)
        self.assertEqual(s['listener'], 'smtp')

    # ---------------------------------------------------------- memory

    def test_stalled_backend_memory_bounded(self):
        """A backend that stops reading: pushing 200 MB blocks the client
        while the front end's memory stays flat."""
        front, (b,) = self.start(proxy='v2', modes=('stall',))
        with h.RawSMTP('127.0.0.1', front.port, timeout=TIMEOUT) as c:
            self.assertEqual(c.read_reply().code, 220)
            self.assertEqual(c.cmd('EHLO stall.test').code, 250)
            c.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n'
                   'DATA\r\n')
            self.assertEqual([c.read_reply().code for _ in range(3)],
                             [250, 250, 354])
            # Warm up: the first few MB allocate whatever buffers exist.
            sent, blocked = h.push_until_blocked(c.sock, 4 << 20)
            base = h.tree_rss_kb(front.pid)
            more, blocked = h.push_until_blocked(c.sock, 200 << 20)
            grown = h.tree_rss_kb(front.pid) - base
            self.assertTrue(blocked, 'client pushed %d MB without blocking'
                            % ((sent + more) >> 20))
            self.assertLess(grown, 16 * 1024,
                            'front end grew by %d KiB after %d MB' %
                            (grown, (sent + more) >> 20))

    # ---------------------------------------------------------- session log

    @smtpfront_only
    def test_session_log_line(self):
        """smtplib session: one log line with the SPEC keys."""
        front, (b,) = self.start(proxy='v2')
        smtp = h.smtp_session('127.0.0.1', front.port, timeout=TIMEOUT)
        local = smtp.sock.getsockname()[1]
        code, msg = smtp.ehlo('log.test')
        self.assertEqual(code, 250)
        smtp.sendmail('a@example.org', ['b@example.net'],
                      b'Subject: log\r\n\r\nhello\r\n')
        smtp.quit()
        s = front.wait_sessions(1, TIMEOUT, pred=lambda s: s.get('client') ==
                                '[127.0.0.1]:%d' % local)[0]
        self.check_session_line(s, b, 'v2', 'ok')
        self.assertGreater(int(s['bytes_in']), 0)
        self.assertGreater(int(s['bytes_out']), 0)
        bs = b.wait_sessions(1, TIMEOUT, pred=lambda x: x.get('client') ==
                             '[127.0.0.1]:%d' % local)[0]
        self.assertEqual((bs['messages'], bs['result']), ('1', 'quit'))


if __name__ == '__main__':
    h.main()
