#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The session line as an operator filters it: log.sessions (all, failed,
none), a sid= unique per session, bytes_out counting smtpfront's own 421,
and last_error naming the servers skipped because they were down or
disabled."""
import re
import unittest

import sfharness as h

TIMEOUT = 20


def session(port, quit=True):
    """EHLO (and QUIT): the replies' codes, or the first line of a refusal."""
    c = h.RawSMTP('127.0.0.1', port)
    try:
        greet = c.read_reply()
        if greet.code != 220:
            return [greet.code], c.recv_bytes
        codes = [c.cmd('EHLO me').code]
        if quit:
            codes.append(c.cmd('QUIT').code)
        c.wait_close()
        return codes, c.recv_bytes
    except EOFError:
        return None, c.recv_bytes
    finally:
        c.sock.close()


class SessionLogTest(h.ControlClient, unittest.TestCase):

    def start(self, mode='normal', sessions=None, workers=1):
        b = h.Backend(mode=mode, proxy='v2', name='b1')
        self.addCleanup(b.stop)
        port = h.free_port()
        cfg = h.make_config_dict(port, [('b1', b.port)], workers=workers,
                                 retries=0,
                                 health={'check': 'connect',
                                         'interval': '10s'})
        if sessions is not None:
            cfg['log']['sessions'] = sessions
        sf = h.Smtpfront(cfg)
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready(TIMEOUT)
        sf.wait_log(r'health: server \S+ is UP', TIMEOUT)
        return sf, port

    def ok(self, sf, *args):
        r = self.ctl(sf, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_failed_logs_no_backend_not_ok(self):
        sf, port = self.start(sessions='failed')
        self.assertEqual(session(port)[0], [250, 221])
        self.ok(sf, 'disable', 'pool/b1')
        codes, got = session(port)
        self.assertEqual(codes, [421])
        line = sf.wait_sessions(1, TIMEOUT)[0]
        self.assertEqual(line['result'], 'no-backend')
        # The 421 the client got is in bytes_out, to the byte.
        self.assertEqual(int(line['bytes_out']), got)
        self.assertEqual(got, len('421 4.3.2 sf.test Service not '
                                  'available, try again later\r\n'))
        # last_error names the server skipped and why.
        self.assertIn('no usable server in pool pool (b1 disabled)',
                      line['last_error'])
        self.assertEqual(sf.sessions(lambda s: s['result'] == 'ok'), [])
        # Counted whatever is logged.
        m = self.ok(sf, 'metrics')
        self.assertRegex(m, r'smtpfront_sessions_total\{listener="smtp",'
                         r'result="ok"\} 1\b')

    def test_failed_logs_server_closed(self):
        sf, port = self.start(mode='close-after-ehlo', sessions='failed')
        session(port, quit=False)
        line = sf.wait_sessions(1, TIMEOUT)[0]
        self.assertEqual(line['result'], 'server-closed')

    def test_none_logs_no_session_line(self):
        sf, port = self.start(sessions='none')
        self.assertEqual(session(port)[0], [250, 221])
        self.ok(sf, 'disable', 'pool/b1')
        self.assertEqual(session(port)[0], [421])
        # Both counted, neither logged: the metrics answer after the
        # sessions ended (same worker, in order).
        m = self.ok(sf, 'metrics')
        self.assertRegex(m, r'result="no-backend"\} 1\b')
        self.assertEqual(sf.sessions(), [])

    def test_sid_unique_and_on_the_line(self):
        sf, port = self.start(workers=2)
        for _ in range(30):
            self.assertEqual(session(port)[0], [250, 221])
        lines = sf.wait_sessions(30, TIMEOUT)
        sids = [s['sid'] for s in lines]
        for sid in sids:
            self.assertRegex(sid, r'^[0-9a-f]+\.[0-9a-f]+$')
        self.assertEqual(len(set(sids)), 30, sids)
        # Each line's sid names the worker that logged it.
        for raw in sf.logs():
            m = re.search(r'smtpfront\[(\d+)\]: session .* sid=([0-9a-f]+)\.',
                          raw)
            if m:
                self.assertEqual(int(m.group(2), 16), int(m.group(1)))


if __name__ == '__main__':
    h.main()
