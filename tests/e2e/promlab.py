# SPDX-License-Identifier: MIT
"""Prometheus for the tests: promtool, and a throwaway Prometheus server
(Debian's prometheus package) with its own config, data directory and a
private port; never the system service. When the package is missing and
we are root, `scripts/deps.sh prometheus` installs it (no service is
started); otherwise the tests that need it skip, and say why. Also: the
README's Monitoring blocks (scrape config, alert rules) and a small HTTP
client for /metrics."""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import sfharness as h

SOURCE_ROOT = os.environ.get('SMTPFRONT_SOURCE_ROOT') or os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..'))


def tools():
    """(promtool, prometheus) paths; installs the package when it can,
    raises unittest.SkipTest when it cannot."""
    promtool, prom = shutil.which('promtool'), shutil.which('prometheus')
    if (promtool is None or prom is None) and os.geteuid() == 0:
        subprocess.run(['sh', os.path.join(SOURCE_ROOT, 'scripts', 'deps.sh'),
                        'prometheus'], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=900)
        promtool, prom = shutil.which('promtool'), shutil.which('prometheus')
    if promtool is None or prom is None:
        raise unittest.SkipTest('Debian\'s prometheus package is not '
                                'installed (scripts/deps.sh prometheus, as '
                                'root)')
    return promtool, prom


def readme_block(marker):
    """The fenced block of README.md's Monitoring section that contains
    marker (its text, without the fences)."""
    with open(os.path.join(SOURCE_ROOT, 'README.md')) as f:
        text = f.read()
    section = text.split('\n## Monitoring\n', 1)[1].split('\n## ', 1)[0]
    for block in re.findall(r'```[a-z]*\n(.*?)```', section, re.S):
        if marker in block:
            return block
    raise AssertionError('no block with %r in README.md, Monitoring' % marker)


def http_get(host, port, path='/metrics', method='GET', timeout=10,
             body=None):
    """(status, headers dict with lower-case names, body text)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        data = r.read().decode('utf-8', 'replace')
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def scrape(port, host='127.0.0.1'):
    status, headers, text = http_get(host, port)
    if status != 200:
        raise AssertionError('GET /metrics: %d %s' % (status, text))
    return text


def samples(text):
    """{series: value} of an exposition ('name{labels}' as written)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        series, value = line.rsplit(' ', 1)
        out[series] = float(value)
    return out


class Prometheus:
    """prometheus scraping `targets` every second, evaluating `rules`
    (a file) every second, on 127.0.0.1:<free port>."""

    def __init__(self, targets, rules=None, ready_timeout=60):
        _, binary = tools()
        self.dir = tempfile.mkdtemp(prefix='sfprom-')
        self.port = h.free_port()
        cfg = ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s',
               '  evaluation_interval: 1s']
        if rules:
            cfg += ['rule_files:', '  - %s' % json.dumps(rules)]
        cfg += ['scrape_configs:', '  - job_name: smtpfront',
                '    static_configs:',
                '      - targets: [%s]' % ', '.join(json.dumps(t)
                                                   for t in targets)]
        self.config = os.path.join(self.dir, 'prometheus.yml')
        with open(self.config, 'w') as f:
            f.write('\n'.join(cfg) + '\n')
        self.log = open(os.path.join(self.dir, 'prometheus.log'), 'w+')
        self.proc = subprocess.Popen(
            [binary, '--config.file=' + self.config,
             '--storage.tsdb.path=' + os.path.join(self.dir, 'data'),
             '--web.listen-address=127.0.0.1:%d' % self.port,
             '--log.level=warn'],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                if http_get('127.0.0.1', self.port, '/-/ready',
                            timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError('prometheus did not start: %s'
                                     % self.logs())
            time.sleep(0.2)

    def logs(self):
        self.log.seek(0)
        return self.log.read()[-4000:]

    def api(self, path, **params):
        url = 'http://127.0.0.1:%d/api/v1/%s?%s' % (
            self.port, path, urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        if doc.get('status') != 'success':
            raise AssertionError('%s: %s' % (path, doc))
        return doc['data']

    def query(self, expr):
        """[(labels without __name__, value)] of an instant query."""
        data = self.api('query', query=expr)
        if data['resultType'] == 'scalar':
            return [({}, float(data['result'][1]))]
        return [({k: v for k, v in r['metric'].items() if k != '__name__'},
                 float(r['value'][1])) for r in data['result']]

    def wait(self, expr, pred, what, timeout=30):
        """Query expr until pred(result) holds; returns the result."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.query(expr)
            if pred(res):
                return res
            if time.monotonic() > deadline:
                raise AssertionError('%s: %s still %r after %ss' % (
                    what, expr, res, timeout))
            time.sleep(0.3)

    def value(self, expr):
        """The single value of expr (None when it has no result)."""
        res = self.query(expr)
        if len(res) > 1:
            raise AssertionError('%s: several results %r' % (expr, res))
        return res[0][1] if res else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
