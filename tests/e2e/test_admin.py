# SPDX-License-Identifier: MIT
"""disable and drain differ as HAProxy's maint and drain do: both stop new
sessions and let open ones finish; disable (maint) also stops the health
checks of the server, so stopping its Postfix for the work logs no DOWN,
and enable resumes them at once, the health unknown until the first one
decides; drain keeps checking, so the state still says whether the server
is up."""

import os
import re
import unittest

import sfharness as h

TIMEOUT = 15
CTL = h.SMTPFRONTCTL_BIN


def check_lines(sf, server, since):
    """Debug lines of checks of server that changed nothing, from since."""
    return [e for e in h.health_events(sf, server, since)
            if e['event'] in ('ok', 'failed')]


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class AdminStatesTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def setUp(self):
        self.b1 = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(self.b1.stop)
        self.b2 = h.Backend(mode='normal', proxy='v2', name='b2')
        self.addCleanup(self.b2.stop)
        self.port = h.free_port()
        cfg = h.make_config_dict(
            self.port, [('b1', self.b1.port), ('b2', self.b2.port)],
            health={'interval': '200ms', 'timeout': '1s', 'rise': 1,
                    'fall': 1},
            log={'target': 'stderr', 'level': 'debug'})
        self.sf = h.Smtpfront(cfg)
        self.addCleanup(self.sf.__exit__, None, None, None)
        self.sf.wait_ready(TIMEOUT)
        h.wait_health(self.sf, 'pool/b1', 'UP', TIMEOUT)
        h.wait_health(self.sf, 'pool/b2', 'UP', TIMEOUT)

    def server(self, doc, name):
        return [s for s in doc['pools'][0]['servers'] if s['name'] == name][0]

    def ctl_ok(self, *args):
        r = self.ctl(self.sf, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, 'ok\n')

    def test_drain_keeps_checking(self):
        self.ctl_ok('drain', 'pool/b1')
        m = self.sf.mark()
        # Checks go on: several more, each every 200 ms.
        h.poll_until(lambda: len(check_lines(self.sf, 'pool/b1', m)),
                     lambda n: n >= 3, 'checks of a drained server', TIMEOUT)
        s = self.server(self.status(self.sf), 'b1')
        self.assertEqual((s['state'], s['health'], s['admin']),
                         ('drain', 'up', 'drain'))
        # Its Postfix stops: the state says so even while it is drained.
        self.b1.stop()
        h.wait_health(self.sf, 'pool/b1', 'DOWN', TIMEOUT, since=m)
        s = self.server(self.status(self.sf), 'b1')
        self.assertEqual((s['state'], s['health']), ('drain', 'down'))
        # New sessions go elsewhere.
        with h.RawSMTP('127.0.0.1', self.port, timeout=TIMEOUT) as c:
            self.assertEqual(c.read_reply().code, 220)
            self.assertEqual(c.cmd('QUIT').code, 221)
        s = self.sf.wait_sessions(1, TIMEOUT)[0]
        self.assertEqual((s['server'], s['result']), ('pool/b2', 'ok'))

    def test_disable_pauses_checks_enable_resumes(self):
        m = self.sf.mark()
        self.ctl_ok('disable', 'pool/b1')
        self.sf.wait_log(r'health: server pool/b1 is in maintenance: checks '
                         r'paused', TIMEOUT, m)
        s = self.server(self.status(self.sf), 'b1')
        self.assertEqual((s['state'], s['health'], s['admin']),
                         ('maint', 'unknown', 'maint'))
        self.assertIn('in maintenance', s['reason'])
        # The work: its Postfix stops. No check, so no DOWN, for a while
        # in which b2 (every 200 ms) is checked several times.
        m2 = self.sf.mark()
        self.b1.stop()
        h.poll_until(lambda: len(check_lines(self.sf, 'pool/b2', m2)),
                     lambda n: n >= 5, 'checks of b2', TIMEOUT)
        self.assertEqual(check_lines(self.sf, 'pool/b1', m2), [])
        self.assertEqual([e for e in h.health_events(self.sf, 'pool/b1', m2)
                          if e['event'] in ('UP', 'DOWN')], [])
        # Enabled while still stopped: checks resume at once and find it.
        m3 = self.sf.mark()
        self.ctl_ok('enable', 'pool/b1')
        self.sf.wait_log(r'health: server pool/b1 is out of maintenance: '
                         r'checks resume', TIMEOUT, m3)
        ev = h.wait_health(self.sf, 'pool/b1', 'DOWN', TIMEOUT, since=m3)
        self.assertEqual(ev['reason'], 'connect: connection refused')
        s = self.server(self.status(self.sf), 'b1')
        self.assertEqual((s['state'], s['admin']), ('down', 'ready'))


if __name__ == '__main__':
    h.main()
