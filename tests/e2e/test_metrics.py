# SPDX-License-Identifier: MIT
"""The metrics endpoint (metrics.bind) and `smtpfrontctl metrics`:
promtool finds nothing to say about the output of a running smtpfront
with two pools, and both give the same series; only GET /metrics is
served (404/405 otherwise), over IPv4 and IPv6; a reload moves, removes
or fails to move the endpoint; counters survive a killed worker and a
reload; a scraper that connects and says nothing, and 100 scrapers at
once, do not delay `status`; what a scrape of 50 servers costs the
master."""

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import unittest

import promlab
import sfharness as h

TIMEOUT = 20
CTL = h.SMTPFRONTCTL_BIN


def config(port, metrics, pools, workers=2, listeners=None, **extra):
    """pools = {name: [(server, port | 'host:port')]}; one listener per
    pool (the first on `port`, named smtp; the others on free ports)."""
    lst = listeners or []
    if not lst:
        for i, name in enumerate(pools):
            lst.append({'name': 'smtp' if i == 0 else 'l-' + name,
                        'bind': ['127.0.0.1:%d' % (port if i == 0 else
                                                   h.free_port())],
                        'pool': name})
    cfg = {'workers': workers, 'hostname': 'sf.test',
           'shutdown_timeout': '10s',
           'log': {'target': 'stderr', 'level': 'info'},
           'control': {'socket': '@DIR@/control.sock'},
           'listeners': lst,
           'pools': {name: {
               'proxy_protocol': 'v2', 'retries': 2,
               'connect_timeout': '2s', 'greeting_timeout': '5s',
               'health': {'interval': '500ms', 'timeout': '2s'},
               'servers': [{'name': s, 'address': a if isinstance(a, str)
                            else '127.0.0.1:%d' % a} for s, a in servers]}
               for name, servers in pools.items()}}
    if metrics is not None:
        cfg['metrics'] = {'bind': metrics}
    cfg.update(extra)
    return cfg


def mail_session(port):
    """One SMTP dialog through smtpfront that ends with QUIT."""
    with h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT) as c:
        if c.read_reply().code != 220:
            raise AssertionError('no greeting')
        if c.cmd('EHLO client.test').code != 250:
            raise AssertionError('EHLO')
        if c.cmd('QUIT').code != 221:
            raise AssertionError('QUIT')


def series_names(text):
    return sorted(s.rsplit(' ', 1)[0] for s in text.splitlines()
                  if s and not s.startswith('#'))


def control_rtt(path):
    """Seconds for one `status` over the control socket."""
    t = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    s.sendall(b'status\n')
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if not data.startswith(b'{"version"'):
        raise AssertionError('status answered %r' % data[:200])
    return time.monotonic() - t


def cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])	# utime + stime


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class MetricsTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def backend(self, mode='normal', name=None):
        b = h.Backend(mode=mode, proxy='v2', name=name)
        self.addCleanup(b.stop)
        return b

    def start(self, cfg):
        sf = h.Smtpfront(cfg)
        self.addCleanup(sf.stop_checked, self, TIMEOUT)
        sf.wait_ready(TIMEOUT)
        return sf

    def ctl_metrics(self, sf):
        r = self.ctl(sf, 'metrics')
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    # ------------------------------------------------------------ format

    def test_promtool_finds_nothing_and_ctl_agrees(self):
        promtool, _ = promlab.tools()
        b1, b2 = self.backend(name='b1'), self.backend(name='b2')
        port, mport = h.free_port(), h.free_port()
        sf = self.start(config(port, '127.0.0.1:%d' % mport, {
            'alpha': [('mx1', b1.port), ('mx2', h.free_port())],
            'beta': [('mx3', b2.port)]}))
        h.wait_health(sf, 'alpha/mx2', 'DOWN', TIMEOUT)
        h.wait_health(sf, 'beta/mx3', 'UP', TIMEOUT)
        for _ in range(3):
            mail_session(port)
        sf.wait_sessions(3, TIMEOUT)

        status, headers, text = promlab.http_get('127.0.0.1', mport)
        self.assertEqual(status, 200)
        self.assertEqual(headers['content-type'],
                         'text/plain; version=0.0.4; charset=utf-8')
        lint = subprocess.run([promtool, 'check', 'metrics'], input=text,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual((lint.returncode, lint.stdout, lint.stderr),
                         (0, '', ''), text[:2000])
        # Every family of SPEC.md "Metrics" is there.
        for fam in ('smtpfront_sessions_total', 'smtpfront_listener_active_'
                    'sessions', 'smtpfront_refusals_total',
                    'smtpfront_server_state', 'smtpfront_server_active_'
                    'sessions', 'smtpfront_server_sessions_total',
                    'smtpfront_gate_failovers_total',
                    'smtpfront_check_failures_total',
                    'smtpfront_check_duration_seconds',
                    'smtpfront_backend_connect_seconds',
                    'smtpfront_gate_first_line_seconds',
                    'smtpfront_session_duration_seconds',
                    'smtpfront_bytes_in_total', 'smtpfront_bytes_out_total',
                    'smtpfront_reloads_total',
                    'smtpfront_reload_failures_total',
                    'smtpfront_worker_restarts_total',
                    'smtpfront_build_info'):
            self.assertIn('\n# TYPE %s ' % fam, text)
        v = promlab.samples(text)
        self.assertEqual(v['smtpfront_sessions_total{listener="smtp",'
                           'result="ok"}'], 3)
        self.assertEqual(v['smtpfront_server_sessions_total{pool="alpha",'
                           'server="mx1"}'], 3)
        self.assertEqual(v['smtpfront_server_state{pool="alpha",'
                           'server="mx2",state="down"}'], 1)
        self.assertEqual(v['smtpfront_server_state{pool="beta",'
                           'server="mx3",state="up"}'], 1)
        self.assertGreaterEqual(v['smtpfront_check_failures_total{pool='
                                  '"alpha",server="mx2",reason='
                                  '"connect-refused"}'], 1)
        self.assertGreater(v['smtpfront_bytes_in_total{listener="smtp"}'],
                           3 * len('EHLO client.test\r\nQUIT\r\n') - 1)
        self.assertEqual(v['smtpfront_session_duration_seconds_count{'
                           'listener="smtp"}'], 3)
        # smtpfrontctl metrics: the same series (values may have moved).
        self.assertEqual(series_names(self.ctl_metrics(sf)),
                         series_names(text))

    # ------------------------------------------------------------ HTTP

    def test_only_get_metrics_is_served(self):
        b = self.backend()
        port, mport = h.free_port(), h.free_port()
        sf = self.start(config(port, '127.0.0.1:%d' % mport,
                               {'p': [('mx1', b.port)]}))
        get = promlab.http_get
        for path in ('/', '/metrics/', '/metricsx', '/Metrics', '/x/metrics'):
            status, _, body = get('127.0.0.1', mport, path)
            self.assertEqual(status, 404, path)
            self.assertIn('GET /metrics only', body)
        for method in ('POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'):
            status, headers, _ = get('127.0.0.1', mport, method=method,
                                     body='x' if method == 'POST' else None)
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get('allow'), 'GET', method)
        self.assertEqual(get('127.0.0.1', mport, '/metrics?x=1')[0], 200)
        # A request that is not HTTP: 400, and the master goes on.
        with socket.create_connection(('127.0.0.1', mport), TIMEOUT) as s:
            s.sendall(b'HELO there\r\n\r\n')
            self.assertRegex(s.recv(100), rb'^HTTP/1\.[01] 400 ')
        self.assertEqual(get('127.0.0.1', mport)[0], 200)
        self.assertEqual(self.status(sf)['generation'], 1)

    def test_ipv6_and_reload_moves_removes_or_keeps_it(self):
        b = self.backend()
        port, p1, p2 = h.free_port(), h.free_port(), h.free_port()
        cfg = config(port, '[::1]:%d' % p1, {'p': [('mx1', b.port)]})
        sf = self.start(cfg)
        self.assertEqual(promlab.http_get('::1', p1)[0], 200)
        # Moved to IPv4: the old address is closed.
        cfg['metrics'] = {'bind': '127.0.0.1:%d' % p2}
        sf.write_config(cfg)
        r = self.ctl(sf, 'reload')
        self.assertEqual((r.returncode, r.stdout), (0, 'ok: generation 2\n'),
                         r.stderr)
        self.assertEqual(promlab.http_get('127.0.0.1', p2)[0], 200)
        with self.assertRaises(ConnectionRefusedError):
            promlab.http_get('::1', p1)
        # An address that cannot be bound fails the reload; nothing moves.
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(busy.close)
        busy.bind(('127.0.0.1', 0))
        busy.listen(1)
        cfg['metrics'] = {'bind': '127.0.0.1:%d' % busy.getsockname()[1]}
        sf.write_config(cfg)
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn('metrics: cannot listen on [127.0.0.1]:%d: Address '
                      'already in use' % busy.getsockname()[1], r.stderr)
        v = promlab.samples(promlab.scrape(p2))
        self.assertEqual(v['smtpfront_generation'], 2)
        self.assertEqual(v['smtpfront_reloads_total'], 1)
        self.assertEqual(v['smtpfront_reload_failures_total'], 1)
        self.assertEqual(v['smtpfront_config_last_reload_successful'], 0)
        # Removed: nothing listens; smtpfrontctl metrics still answers.
        del cfg['metrics']
        sf.write_config(cfg)
        r = self.ctl(sf, 'reload')
        self.assertEqual((r.returncode, r.stdout), (0, 'ok: generation 3\n'),
                         r.stderr)
        with self.assertRaises(ConnectionRefusedError):
            promlab.http_get('127.0.0.1', p2)
        v = promlab.samples(self.ctl_metrics(sf))
        self.assertEqual(v['smtpfront_reloads_total'], 2)
        self.assertEqual(v['smtpfront_config_last_reload_successful'], 1)
        sf.wait_log(r'metrics: no longer listening on \[127\.0\.0\.1\]:%d'
                    % p2, TIMEOUT)

    # ------------------------------------------------------------ counters

    def test_counters_survive_a_killed_worker_and_a_reload(self):
        b = self.backend()
        port, mport = h.free_port(), h.free_port()
        cfg = config(port, '127.0.0.1:%d' % mport, {'p': [('mx1', b.port)]})
        sf = self.start(cfg)
        for _ in range(4):
            mail_session(port)
        sf.wait_sessions(4, TIMEOUT)
        ok = 'smtpfront_sessions_total{listener="smtp",result="ok"}'
        total = 'smtpfront_server_sessions_total{pool="p",server="mx1"}'
        hist = 'smtpfront_session_duration_seconds_count{listener="smtp"}'
        v = promlab.samples(promlab.scrape(mport))
        self.assertEqual((v[ok], v[total], v[hist]), (4, 4, 4))
        # A worker dies: its counts stay, a respawn counts on.
        victim = self.status(sf)['workers'][0]['pid']
        os.kill(victim, signal.SIGKILL)
        sf.wait_log(r'worker \d+ \(pid %d\) killed by signal 9; respawning'
                    % victim, TIMEOUT)
        self.wait_status(sf, lambda d: len(d['workers']) == 2 and
                         victim not in [w['pid'] for w in d['workers']],
                         'worker respawned')
        v = promlab.samples(promlab.scrape(mport))
        self.assertEqual((v[ok], v[total], v[hist]), (4, 4, 4))
        self.assertEqual(v['smtpfront_worker_restarts_total'], 1)
        # A reload: a new generation of workers, the same counters.
        cfg['shutdown_timeout'] = '9s'
        sf.write_config(cfg)
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 0, r.stderr)
        for _ in range(2):
            mail_session(port)
        sf.wait_sessions(6, TIMEOUT)
        v = promlab.samples(promlab.scrape(mport))
        self.assertEqual((v[ok], v[total], v[hist]), (6, 6, 6))
        self.assertEqual(v['smtpfront_generation'], 2)

    # ------------------------------------------------------------ cost

    def fifty_servers(self):
        """smtpfront with 50 servers (two pools of 25, one backend)."""
        b = self.backend()
        port, mport = h.free_port(), h.free_port()
        pools = {'alpha': [('a%02d' % i, b.port) for i in range(25)],
                 'beta': [('b%02d' % i, b.port) for i in range(25)]}
        cfg = config(port, '127.0.0.1:%d' % mport, pools)
        for p in cfg['pools'].values():
            p['health'] = {'interval': '2s', 'timeout': '2s',
                           'check': 'connect'}
        sf = self.start(cfg)
        return sf, port, mport

    def test_a_stuck_scraper_and_100_scrapers_do_not_delay_status(self):
        sf, port, mport = self.fifty_servers()
        path = sf.control_socket
        for _ in range(5):
            control_rtt(path)			# warm up
        base = [control_rtt(path) for _ in range(60)]
        # Connects and says nothing; another sends half a request.
        idle = socket.create_connection(('127.0.0.1', mport), TIMEOUT)
        self.addCleanup(idle.close)
        half = socket.create_connection(('127.0.0.1', mport), TIMEOUT)
        self.addCleanup(half.close)
        half.sendall(b'GET /metr')
        stuck = [control_rtt(path) for _ in range(60)]
        # 100 scrapers at once, in another process, for as long as we
        # measure.
        crowd = subprocess.Popen(
            [sys.executable, '-c', CROWD, str(mport), '100'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.nice(5))
        self.addCleanup(lambda: crowd.poll() is None and crowd.kill())
        self.assertEqual(crowd.stdout.readline().strip(), 'running')
        time.sleep(0.5)				# the crowd is at full strength
        crowded = [control_rtt(path) for _ in range(100)]
        crowd.send_signal(signal.SIGTERM)
        out, err = crowd.communicate(TIMEOUT)
        scrapes = int(out.split()[0])
        ms = lambda xs, q: 1000 * statistics.quantiles(xs, n=20)[q]
        med = lambda xs: 1000 * statistics.median(xs)
        print('\nstatus over the control socket, 50 servers: median %.2f '
              'ms (p95 %.2f) alone; %.2f ms (p95 %.2f) with an idle and a '
              'half-sent scraper; %.2f ms (p95 %.2f) during %d scrapes by '
              '100 parallel scrapers' % (med(base), ms(base, 18), med(stuck),
                                         ms(stuck, 18), med(crowded),
                                         ms(crowded, 18), scrapes),
              file=sys.stderr)
        self.assertGreater(scrapes, 100, err)
        # The idle ones change nothing; the crowd costs a few ms at most:
        # status waits for one scrape's answer, never for the queue (100
        # scrapes). A sanitizer build makes a scrape 3 times as long (CI:
        # 2.3 against 0.7 ms), so its slack is 3 times as wide.
        slack = 3.0 if os.environ.get('SMTPFRONT_SANITIZED') == '1' else 1.0
        self.assertLess(med(stuck) - med(base), 2.0 * slack)
        self.assertLess(med(crowded) - med(base), 5.0 * slack)
        self.assertLess(ms(crowded, 18), ms(base, 18) + 10.0 * slack)
        # And the stuck ones were closed by the deadline, not served.
        idle.settimeout(TIMEOUT)
        self.assertEqual(idle.recv(10), b'')

    def session_cost(self, sf, port, seconds=2.0):
        """(sessions/s, workers' CPU ms per session) of sequential
        sessions for `seconds`."""
        kids = h.child_pids(sf.pid)
        c0 = sum(cpu_ticks(p) for p in kids)
        t, n = time.monotonic(), 0
        while time.monotonic() - t < seconds:
            mail_session(port)
            n += 1
        wall = time.monotonic() - t
        cpu = (sum(cpu_ticks(p) for p in kids) - c0) / \
            os.sysconf('SC_CLK_TCK')
        return n / wall, 1000 * cpu / n

    def test_the_cost_of_a_scrape_of_50_servers(self):
        sf, port, mport = self.fifty_servers()
        for _ in range(20):
            mail_session(port)
        text = promlab.scrape(mport)
        n = 300
        kids = [w['pid'] for w in self.status(sf)['workers']]
        t0, c0 = time.monotonic(), cpu_ticks(sf.pid)
        w0 = sum(cpu_ticks(p) for p in kids)
        for _ in range(n):
            promlab.scrape(mport)
        wall = (time.monotonic() - t0) / n
        cpu = (cpu_ticks(sf.pid) - c0) / os.sysconf('SC_CLK_TCK') / n
        # What the workers spent meanwhile: a scrape reads shared memory
        # in the master and wakes no worker.
        kids_ticks = sum(cpu_ticks(p) for p in kids) - w0
        # Sessions while a scraper asks every 100 ms (150 times what a
        # 15 s scrape interval asks), against sessions alone, alternated.
        alone, scraped = [], []
        for _ in range(2):
            alone.append(self.session_cost(sf, port))
            crowd = subprocess.Popen(
                [sys.executable, '-c', CROWD, str(mport), '1', '0.1'],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.addCleanup(lambda c=crowd: c.poll() is None and c.kill())
            self.assertEqual(crowd.stdout.readline().strip(), 'running')
            scraped.append(self.session_cost(sf, port))
            crowd.send_signal(signal.SIGTERM)
            out, err = crowd.communicate(TIMEOUT)
            self.assertGreater(int(out.split()[0]), 10, err)
        best = lambda xs: (max(x[0] for x in xs), min(x[1] for x in xs))
        print('\nscrape of 50 servers: %d bytes, %d series; master CPU '
              '%.2f ms per scrape, %.2f ms per scrape end to end; '
              'sequential sessions: %.0f/s at %.3f ms of worker CPU each '
              'alone, %.0f/s at %.3f ms while scraped every 100 ms; '
              'workers\' CPU during the %d scrapes: %d tick(s)'
              % ((len(text), len(promlab.samples(text)), cpu * 1000,
                  wall * 1000) + best(alone) + best(scraped) +
                 (n, kids_ticks)),
              file=sys.stderr)
        # 5 ms of the master's CPU a scrape; sanitizer builds run the same
        # code 2-3 times slower (CI measured 5.3 ms under ASan).
        budget = 15.0 if os.environ.get('SMTPFRONT_SANITIZED') == '1' else 5.0
        self.assertLess(cpu * 1000, budget)
        # A scrape is the master's work alone: counted in the workers' own
        # CPU over 300 scrapes with no session (a 10 ms tick at most, for
        # whatever else a worker's loop does meanwhile), not in the cost
        # per session while scraped, which two shared cores make a timing
        # test (CI measured 0.169 against 0.108 ms with nothing changed).
        self.assertLessEqual(kids_ticks, 1)


# The scrapers: N threads in one process, each GET /metrics in a loop
# (with a pause of argv[3] seconds between scrapes); prints "running",
# and the number of scrapes when told to stop.
CROWD = r'''
import http.client, signal, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0
stop = threading.Event()
count = [0]
def loop():
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
            c.request('GET', '/metrics')
            c.getresponse().read()
            c.close()
            count[0] += 1
        except OSError:
            pass
        if pause:
            stop.wait(pause)
ts = [threading.Thread(target=loop) for _ in range(n)]
for t in ts:
    t.start()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
print('running', flush=True)
while not stop.wait(0.2):
    pass
for t in ts:
    t.join()
print(count[0], flush=True)
'''


if __name__ == '__main__':
    h.main()
