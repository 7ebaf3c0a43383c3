# SPDX-License-Identifier: MIT
"""The health process against the test backend's fault modes: every fault
gives the right state and the reason SPEC.md names; the check sends the
pool's PROXY header (a real v1 line, a v2 LOCAL) and never speaks before the
final 220 of a teaser; rise/fall count consecutive checks; a pool with every
server down answers 421 at once; backups serve only while the primary is
down; `check: connect` stops after connect; a killed health process is
respawned and the published state survives it; `status` shows each
server's last change, time down and failed checks (issue 20), and the
time down survives a respawn of the health process."""

import json
import os
import re
import signal
import subprocess
import time
import unittest

import sfharness as h

TIMEOUT = 15
HINT = '(does the backend expect a PROXY header?)'


def pool(servers, proxy='v2', **health):
    """A pool section: servers = [(name, port)]."""
    hc = {'interval': '300ms', 'timeout': '1s', 'rise': 1, 'fall': 1}
    hc.update(health)
    return {'proxy_protocol': proxy, 'retries': 2, 'connect_timeout': '2s',
            'greeting_timeout': '5s', 'health': hc,
            'servers': [{'name': n, 'address': '127.0.0.1:%d' % p}
                        for n, p in servers]}


class HealthTest(unittest.TestCase):

    # ---------------------------------------------------------- fixtures

    def backend(self, mode='normal', proxy='v2', name=None, **kw):
        b = h.Backend(mode=mode, proxy=proxy, name=name, **kw)
        self.addCleanup(b.stop)
        return b

    def smtpfront(self, cfg):
        sf = h.Smtpfront(cfg)
        self.addCleanup(sf.stop_checked, self, TIMEOUT)
        sf.wait_ready()
        return sf

    def start(self, servers, proxy='v2', level='info', **health):
        """smtpfront with one listener on pool 'pool' (servers = [(name,
        port[, extra keys])]), health defaults: interval 300ms, timeout 1s,
        rise 1, fall 1."""
        hc = {'interval': '300ms', 'timeout': '1s', 'rise': 1, 'fall': 1}
        hc.update(health)
        port = h.free_port()
        cfg = h.make_config_dict(port, servers, proxy=proxy, health=hc,
                                 log={'target': 'stderr', 'level': level})
        sf = self.smtpfront(cfg)
        sf.port = port
        return sf

    def client(self, sf):
        c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        return c

    def served_by(self, sf, n=1):
        """Run n short SMTP sessions; the backend names that greeted them."""
        names = []
        for _ in range(n):
            c = self.client(sf)
            r = c.read_reply()
            self.assertEqual(r.code, 220, r)
            names.append(r.lines[0].split()[0])
            self.assertEqual(c.cmd('QUIT').code, 221)
            self.assertEqual(c.wait_close(TIMEOUT)[1], 'eof')
            c.close()
        return names

    # ---------------------------------------------------------- reasons

    def test_fault_modes_give_state_and_reason(self):
        """One smtpfront, one pool per check setting; every server's first
        state change has the expected state and reason."""
        refused = h.free_port()
        v2 = {'b421': self.backend('greet-421'),
              'b554': self.backend('greet-554'),
              'nogreet': self.backend('no-greet'),
              'close': self.backend('close'),
              'ehloclose': self.backend('close-after-ehlo'),
              'rejv2': self.backend('reject-proxy', proxy='none'),
              'good': self.backend('normal', proxy='v2')}
        teaser = self.backend('teaser', proxy='v2', teaser_ms=1500)
        rejv1 = self.backend('reject-proxy', proxy='none')
        goodv1 = self.backend('normal', proxy='v1')
        conn = self.backend('no-greet', proxy='v2')
        port = h.free_port()
        cfg = h.make_config_dict(port, [], health={})
        cfg['pools'] = {
            'pool': pool([('refused', refused)] +
                         [(n, b.port) for n, b in v2.items()]),
            'slow': pool([('teaser', teaser.port)], timeout='5s'),
            'v1': pool([('rejv1', rejv1.port), ('goodv1', goodv1.port)],
                       proxy='v1'),
            'conn': pool([('nogreet', conn.port)], check='connect'),
        }
        sf = self.smtpfront(cfg)
        want = [
            ('pool/refused', 'DOWN', r'connect: connection refused'),
            ('pool/b421', 'DOWN',
             r'greeting 421 4\.3\.2 All server ports are busy'),
            ('pool/b554', 'DOWN', r'greeting 554 5\.7\.1 Service unavailable; '
             r'client blocked'),
            ('pool/nogreet', 'DOWN', r'timeout waiting for greeting'),
            ('pool/close', 'DOWN', r'connection closed before greeting'),
            # The backend answers EHLO, then hangs up before QUIT's 221.
            ('pool/ehloclose', 'DOWN', r'connection closed after (EHLO|QUIT)'),
            ('pool/rejv2', 'DOWN',
             r'EHLO answered 500 5\.5\.2 .*' + re.escape(HINT)),
            ('pool/good', 'UP', r'EHLO ok'),
            ('slow/teaser', 'UP', r'EHLO ok'),
            ('v1/rejv1', 'DOWN', r'EHLO answered 500 5\.5\.2 Error: command '
             r'not recognized ' + re.escape(HINT)),
            ('v1/goodv1', 'UP', r'EHLO ok'),
            ('conn/nogreet', 'UP', r'connect ok'),
        ]
        for server, state, reason in want:
            with self.subTest(server=server):
                ev = h.wait_health(sf, server, None, TIMEOUT)
                self.assertEqual(ev['event'], state, ev)
                self.assertRegex(ev['reason'], '^%s$' % reason)

        # v1: a real PROXY TCP4 line from the check's own endpoints (the
        # strict v1 backend would drop anything else); v2: LOCAL.
        s = goodv1.wait_sessions(1, TIMEOUT)[0]
        self.assertEqual(s['proxy'], 'v1', s)
        ip, sport = h.split_endpoint(s['client'])
        self.assertEqual(ip, '127.0.0.1')
        self.assertNotEqual(sport, goodv1.port)
        self.assertEqual(s['result'], 'quit', s)       # QUIT, 221, FIN
        s = v2['good'].wait_sessions(1, TIMEOUT)[0]
        self.assertEqual(s['proxy'], 'local', s)
        self.assertEqual(s['result'], 'quit', s)

        # The teaser check waited for the final 220 before its EHLO.
        for s in teaser.wait_sessions(1, TIMEOUT):
            self.assertEqual(s['proxy'], 'local', s)
            self.assertEqual(s['result'], 'quit', s)
            self.assertNotIn('pregreet', s)

        # check: connect sends the header and says nothing more.
        s = conn.wait_sessions(1, TIMEOUT)[0]
        self.assertEqual(s['proxy'], 'local', s)
        self.assertEqual(s['result'], 'closed', s)
        self.assertNotIn('pregreet', s)

    # ---------------------------------------------------------- rise/fall

    def test_rise_and_fall_count_consecutive_checks(self):
        port = h.free_port()
        sf = self.start([('b1', port)], level='debug', rise=3, fall=2)
        down = h.wait_health(sf, 'pool/b1', 'DOWN', TIMEOUT)
        self.assertEqual(down['reason'], 'connect: connection refused')
        # Refused again: it stays down, silently.
        sf.wait_log(r'health: server pool/b1 failed: connect: connection '
                    r'refused', TIMEOUT, since=down['index'] + 1)

        b = self.backend('normal', listen='127.0.0.1:%d' % port, name='b1')
        up = h.wait_health(sf, 'pool/b1', 'UP', TIMEOUT,
                           since=down['index'] + 1)
        self.assertEqual(up['reason'], 'EHLO ok')
        evs = h.health_events(sf, 'pool/b1', down['index'] + 1)
        evs = evs[:evs.index(up) + 1]
        # Checks after the last failure: rise - 1 silent successes, then UP.
        last_fail = max(i for i, e in enumerate(evs) if e['event'] == 'failed')
        self.assertEqual([e['event'] for e in evs[last_fail + 1:]],
                         ['ok', 'ok', 'UP'], evs)
        self.assertGreaterEqual(len(b.wait_sessions(3, TIMEOUT)), 3)

        # UP -> DOWN after `fall` consecutive failures.
        b.stop()
        dn = h.wait_health(sf, 'pool/b1', 'DOWN', TIMEOUT,
                           since=up['index'] + 1)
        evs = h.health_events(sf, 'pool/b1', up['index'] + 1)
        evs = evs[:evs.index(dn) + 1]
        self.assertEqual([e['event'] for e in evs], ['ok'] * (len(evs) - 2) +
                         ['failed', 'DOWN'], evs)
        self.assertEqual(dn['reason'], 'connect: connection refused')

    # ---------------------------------------------------------- status

    def server_status(self, sf, name='b1'):
        r = subprocess.run([h.SMTPFRONTCTL_BIN, '-s', sf.control_socket,
                            'status', '--json'], capture_output=True,
                           text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        (srv,) = [s for p in json.loads(r.stdout)['pools']
                  for s in p['servers'] if s['name'] == name]
        return srv

    def checks_after(self, sf, since, n):
        """Wait for n more checks of pool/b1 (debug lines) after index."""
        evs = h.poll_until(lambda: h.health_events(sf, 'pool/b1', since),
                           lambda e: len(e) >= n, '%d checks' % n, TIMEOUT)
        return evs[n - 1]['index'] + 1

    def test_status_last_change_downtime_failed_checks(self):
        port = h.free_port()
        t0 = time.monotonic()
        sf = self.start([('b1', port)], level='debug', interval='100ms')
        down = h.wait_health(sf, 'pool/b1', 'DOWN', TIMEOUT)
        first = self.server_status(sf)
        self.assertIsNotNone(first['last_change_s'])
        self.assertGreaterEqual(first['check_failures'], 1)
        # while down: each check is a failure, down time and the time
        # since the change grow
        idx = self.checks_after(sf, down['index'] + 1, 3)
        st = self.server_status(sf)
        self.assertEqual(st['health'], 'down')
        self.assertGreaterEqual(st['check_failures'],
                                first['check_failures'] + 3)
        self.assertGreater(st['downtime_s'], first['downtime_s'])
        self.assertGreater(st['last_change_s'], first['last_change_s'])
        self.assertLessEqual(st['downtime_s'], time.monotonic() - t0)

        # the health process respawned goes on from the published record
        mark = sf.mark()
        os.kill(down['pid'], signal.SIGKILL)
        sf.wait_log(r'health process \d+ respawned as pid (\d+)', TIMEOUT,
                    since=mark)
        self.checks_after(sf, sf.mark(), 2)
        again = self.server_status(sf)
        self.assertGreaterEqual(again['downtime_s'], st['downtime_s'])
        self.assertGreaterEqual(again['check_failures'],
                                st['check_failures'])

        # UP: the change is recent again, the down time and the failed
        # checks stop growing
        mark = sf.mark()
        self.backend('normal', listen='127.0.0.1:%d' % port, name='b1')
        up = h.wait_health(sf, 'pool/b1', 'UP', TIMEOUT, since=mark)
        at_up = self.server_status(sf)
        self.assertEqual(at_up['health'], 'up')
        self.assertLess(at_up['last_change_s'], again['last_change_s'])
        self.assertGreaterEqual(at_up['downtime_s'], again['downtime_s'])
        self.checks_after(sf, up['index'] + 1, 3)
        later = self.server_status(sf)
        self.assertEqual(later['downtime_s'], at_up['downtime_s'])
        self.assertEqual(later['check_failures'], at_up['check_failures'])
        self.assertGreater(later['last_change_s'], at_up['last_change_s'])

        # the table shows them
        r = subprocess.run([h.SMTPFRONTCTL_BIN, '-s', sf.control_socket,
                            'status'], capture_output=True, text=True,
                           timeout=TIMEOUT)
        self.assertRegex(r.stdout, r'CHECKED +CHANGED +DOWN +CHKFAIL +'
                         r'REASON')
        self.assertRegex(r.stdout, r'\nb1 .* up .* ago +\d+s +%d +EHLO ok'
                         % later['check_failures'])

    # ---------------------------------------------------------- routing

    def test_every_server_down_gives_421_at_once(self):
        sf = self.start([('b1', h.free_port()), ('b2', h.free_port())])
        for name in ('pool/b1', 'pool/b2'):
            h.wait_health(sf, name, 'DOWN', TIMEOUT)
        c = self.client(sf)
        t0 = time.monotonic()
        r = c.read_reply()
        elapsed = time.monotonic() - t0
        self.assertEqual((r.code, r.text), (
            421, '4.3.2 sf.test Service not available, try again later'))
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        self.assertLess(elapsed, 1.0)          # connect_timeout is 2 s
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['result'], 'no-backend', s)
        self.assertEqual(s['attempts'], '0', s)   # nothing was tried
        self.assertEqual(s['server'], '-', s)
        self.assertIn('no usable server', s.get('last_error', ''), s)

    def test_backup_only_while_primary_down(self):
        primary = self.backend('normal', name='primary')
        backup = self.backend('normal', name='spare')
        ppor = primary.port
        sf = self.start([('primary', ppor),
                         ('spare', backup.port, {'backup': True})])
        h.wait_health(sf, 'pool/primary', 'UP', TIMEOUT)
        h.wait_health(sf, 'pool/spare', 'UP', TIMEOUT)
        self.assertEqual(set(self.served_by(sf, 6)), {'primary'})

        mark = sf.mark()
        primary.stop()
        h.wait_health(sf, 'pool/primary', 'DOWN', TIMEOUT, since=mark)
        self.assertEqual(set(self.served_by(sf, 6)), {'spare'})
        sessions = sf.sessions()
        # Picked from the health state, not by failing over.
        self.assertTrue(all(s['attempts'] == '1' for s in sessions[-6:]),
                        sessions[-6:])

        mark = sf.mark()
        again = self.backend('normal', name='primary',
                             listen='127.0.0.1:%d' % ppor)
        h.wait_health(sf, 'pool/primary', 'UP', TIMEOUT, since=mark)
        self.assertEqual(set(self.served_by(sf, 6)), {'primary'})
        again.wait_sessions(6, TIMEOUT, pred=lambda s: s['proxy'] == 'v2')

    # ---------------------------------------------------------- respawn

    def test_killed_health_process_is_respawned_state_kept(self):
        b = self.backend('normal', name='b1')
        sf = self.start([('b1', b.port)])
        up = h.wait_health(sf, 'pool/b1', 'UP', TIMEOUT)
        hpid = up['pid']
        self.assertIn(hpid, sf.children())
        self.assertEqual(self.served_by(sf, 3), ['b1'] * 3)

        mark = sf.mark()
        os.kill(hpid, signal.SIGKILL)
        sf.wait_log(r'health process \d+ \(pid %d\) killed by signal 9; '
                    r'respawning' % hpid, TIMEOUT, since=mark)
        m = sf.wait_log(r'health process \d+ respawned as pid (\d+)',
                        TIMEOUT, since=mark)
        new = int(m.group(1))
        self.assertNotEqual(new, hpid)
        self.assertIn(new, sf.children())
        self.assertNotIn(hpid, sf.children())

        # The new process checks again (the backend sees its checks) ...
        checks = lambda s: s['proxy'] == 'local'
        seen = len(b.sessions(checks))
        b.wait_sessions(seen + 3, TIMEOUT, pred=checks)
        # ... and traffic flows throughout.
        self.assertEqual(self.served_by(sf, 3), ['b1'] * 3)
        # The published UP state carried over: no new state-change line.
        self.assertEqual([e for e in h.health_events(sf, since=mark)
                          if e['event'] in ('UP', 'DOWN')], [])


if __name__ == '__main__':
    h.main()
