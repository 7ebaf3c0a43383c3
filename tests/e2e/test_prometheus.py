# SPDX-License-Identifier: MIT
"""A real Prometheus server (Debian's, a throwaway instance with its own
config and data directory on a private port) scrapes smtpfront every
second and evaluates the README's alert rules. After sessions, a refusal,
a gate failover, a stopped backend and a reload, its HTTP API answers
what happened: sessions by result, the server down, the failover
counted, counters never reset by the reload, and the three alerts firing
for the right pool, server and listener. The README's scrape config and
rules pass `promtool check`."""

import os
import subprocess
import tempfile
import shutil
import unittest

import promlab
import sfharness as h

TIMEOUT = 30
CTL = h.SMTPFRONTCTL_BIN


def mail_session(port):
    with h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT) as c:
        assert c.read_reply().code == 220
        assert c.cmd('EHLO client.test').code == 250
        assert c.cmd('QUIT').code == 221


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class PrometheusTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def setUp(self):
        self.promtool, _ = promlab.tools()
        self.dir = tempfile.mkdtemp(prefix='sfrules-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.rules = os.path.join(self.dir, 'smtpfront.rules.yml')
        with open(self.rules, 'w') as f:
            f.write(promlab.readme_block('groups:'))

    def test_readme_scrape_config_and_rules_pass_promtool(self):
        r = subprocess.run([self.promtool, 'check', 'rules', self.rules],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('SUCCESS: 3 rules found', r.stdout)
        cfg = os.path.join(self.dir, 'prometheus.yml')
        with open(cfg, 'w') as f:
            f.write(promlab.readme_block('scrape_configs:'))
        r = subprocess.run([self.promtool, 'check', 'config', cfg],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('SUCCESS', r.stdout)

    def test_prometheus_sees_what_happened(self):
        good = h.Backend(mode='normal', proxy='v2', name='good')
        self.addCleanup(good.stop)
        busy = h.Backend(mode='greet-421', proxy='v2', name='busy')
        self.addCleanup(busy.stop)
        lone = h.Backend(mode='normal', proxy='v2', name='lone')
        self.addCleanup(lone.stop)
        port, small, mport = h.free_port(), h.free_port(), h.free_port()
        cfg = {
            'workers': 2, 'hostname': 'sf.test', 'shutdown_timeout': '10s',
            'log': {'target': 'stderr', 'level': 'info'},
            'control': {'socket': '@DIR@/control.sock'},
            'metrics': {'bind': '127.0.0.1:%d' % mport},
            'listeners': [
                {'name': 'smtp', 'bind': ['127.0.0.1:%d' % port],
                 'pool': 'alpha'},
                {'name': 'small', 'bind': ['127.0.0.1:%d' % small],
                 'pool': 'beta', 'max_connections': 1}],
            'pools': {
                # The busy server passes a connect check and fails every
                # session at the gate (421 4.3.2): a failover each time
                # it is picked.
                'alpha': {'balance': 'roundrobin', 'retries': 2,
                          'health': {'interval': '500ms', 'check': 'connect'},
                          'servers': [
                              {'name': 'mx1', 'address': good.addr},
                              {'name': 'busy', 'address': busy.addr}]},
                'beta': {'health': {'interval': '300ms', 'timeout': '1s',
                                    'fall': 1},
                         'servers': [{'name': 'mx3', 'address': lone.addr}]},
            }}
        sf = h.Smtpfront(cfg)
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready(TIMEOUT)
        prom = promlab.Prometheus(['127.0.0.1:%d' % mport], self.rules)
        self.addCleanup(prom.stop)
        prom.wait('up{job="smtpfront"}', lambda r: r and r[0][1] == 1,
                  'smtpfront scraped')
        h.wait_health(sf, 'alpha/busy', 'UP', TIMEOUT)

        # Sessions: every one ends ok, on mx1; busy costs failovers.
        for _ in range(6):
            mail_session(port)
        # A refusal: the small listener holds one session at most.
        held = h.RawSMTP('127.0.0.1', small, timeout=TIMEOUT)
        self.assertEqual(held.read_reply().code, 220)
        with h.RawSMTP('127.0.0.1', small, timeout=TIMEOUT) as c:
            self.assertEqual(c.read_reply().code, 421)
        self.assertEqual(held.cmd('QUIT').code, 221)
        held.close()
        # A backend stops: beta's only server goes down.
        m = sf.mark()
        lone.stop()
        h.wait_health(sf, 'beta/mx3', 'DOWN', TIMEOUT, since=m)
        sf.wait_sessions(8, TIMEOUT)
        failovers = sum(1 for s in sf.sessions()
                        if 'alpha/busy: greeting 421' in
                        s.get('last_error', ''))
        self.assertGreater(failovers, 0)

        def one(expr, want, what):
            prom.wait(expr, lambda r: len(r) == 1 and r[0][1] == want, what)

        one('smtpfront_sessions_total{listener="smtp",result="ok"}', 6,
            'sessions ok')
        one('sum(smtpfront_sessions_total{listener="smtp"})', 6,
            'no other result')
        one('smtpfront_sessions_total{listener="small",result="overload"}',
            1, 'the refusal')
        one('smtpfront_refusals_total{listener="small",reason="overload"}',
            1, 'the refusal, as a refusal')
        one('smtpfront_server_sessions_total{pool="alpha",server="mx1"}', 6,
            'sessions relayed by mx1')
        one('smtpfront_gate_failovers_total{pool="alpha",server="busy",'
            'reason="greeting-4xx"}', failovers, 'failovers')
        one('sum(smtpfront_gate_failovers_total)', failovers,
            'no other failover')
        one('smtpfront_server_state{pool="beta",server="mx3",state="down"}',
            1, 'mx3 down')
        one('smtpfront_server_state{pool="alpha",server="mx1",state="up"}',
            1, 'mx1 up')
        prom.wait('smtpfront_check_failures_total{pool="beta",server="mx3",'
                  'reason="connect-refused"}',
                  lambda r: len(r) == 1 and r[0][1] >= 1, 'failed checks')
        prom.wait('histogram_quantile(0.5, smtpfront_backend_connect_seconds_'
                  'bucket{server="mx1"})',
                  lambda r: len(r) == 1 and 0 < r[0][1] < 0.1,
                  'connect times')

        # The README's alerts, evaluated by Prometheus: the rules load,
        # and their expressions name what is wrong (their `for:` would
        # make them fire minutes later).
        groups = prom.api('rules')['groups']
        rules = {r['name']: r for g in groups for r in g['rules']}
        self.assertEqual(set(rules), {'SmtpfrontServerDown',
                                      'SmtpfrontPoolDown',
                                      'SmtpfrontRefusalsRising'})
        prom.wait('ALERTS{alertname="SmtpfrontServerDown"}',
                  lambda r: [x[0]['server'] for x in r] == ['mx3'],
                  'server down, pending')
        prom.wait('ALERTS{alertname="SmtpfrontPoolDown"}',
                  lambda r: [x[0]['pool'] for x in r] == ['beta'],
                  'pool down, pending')
        prom.wait('ALERTS{alertname="SmtpfrontRefusalsRising"}',
                  lambda r: [x[0]['listener'] for x in r] == ['small'],
                  'refusals, pending')
        for r in rules.values():
            self.assertEqual(r['health'], 'ok', r)

        # A reload: a new generation of workers; nothing is reset.
        cfg['pools']['alpha']['servers'][0]['weight'] = 2
        sf.write_config(cfg)
        r = self.ctl(sf, 'reload')
        self.assertEqual((r.returncode, r.stdout), (0, 'ok: generation 2\n'),
                         r.stderr)
        mail_session(port)
        mail_session(port)
        one('smtpfront_generation', 2, 'generation 2')
        one('smtpfront_reloads_total', 1, 'one reload')
        one('smtpfront_sessions_total{listener="smtp",result="ok"}', 8,
            'sessions after the reload')
        one('resets(smtpfront_sessions_total{listener="smtp",result="ok"}'
            '[10m])', 0, 'no reset of sessions')
        one('sum(resets(smtpfront_gate_failovers_total[10m]))', 0,
            'no reset of failovers')
        one('sum(resets(smtpfront_session_duration_seconds_count[10m]))', 0,
            'no reset of histograms')
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)


if __name__ == '__main__':
    h.main()
