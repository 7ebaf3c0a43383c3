# SPDX-License-Identifier: MIT
"""smtpfront -t: exit 0 on a valid file (warnings allowed), 1 with every
error as FILE:LINE:COLUMN: message; children run as the configured user."""

import os
import re
import subprocess
import tempfile
import unittest

import sfharness as h

VALID = """\
hostname: mx.test
listeners:
  - name: smtp
    bind: ["127.0.0.1:%d"]
    pool: p
pools:
  p:
    servers:
      - name: a
        address: 127.0.0.1:9
"""

TWO_ERRORS = """\
hostname: mx.test
listeners:
  - name: smtp
    bind: ["127.0.0.1:2525"]
    pool: nosuchpool
    client_timeout: 5x
pools:
  p:
    servers:
      - name: a
        address: 127.0.0.1:9
"""


# Every key set, most to a value other than its default, for -n.
FULL = """\
workers: 3
user: nobody
shutdown_timeout: 90s
hostname: mx.example.test
state_directory: /var/lib/smtpfront-test
sandbox: false
log:
  target: syslog
  facility: local3
  level: warning
  syslog_socket: /run/test-log
control:
  socket: /run/smtpfront-test/control.sock
  mode: "0660"
  group: mail
  admin_group: adm
metrics:
  bind: "127.0.0.1:%(mport)d"
listeners:
  - name: smtp
    bind: ["127.0.0.1:%(port)d", "[::1]:%(port)d"]
    pool: p
    mode: smtp
    max_connections: 500
    max_connections_per_client: 20
    max_connection_rate_per_client: 30
    client_limit_exceptions: [192.0.2.0/28, "2001:db8::/48"]
    deny: [198.51.100.7]
    accept_proxy: true
    trusted_proxies: [10.0.0.0/8]
    proxy_timeout: 1500ms
    client_timeout: 2h
pools:
  p:
    balance: source
    source_prefix: {ipv4: 16, ipv6: 48}
    proxy_protocol: v1
    connect_timeout: 3s
    greeting_timeout: 1m
    server_timeout: 20m
    retries: 4
    health:
      interval: 500ms
      timeout: 2s
      rise: 5
      fall: 6
      helo: check.example.test
      check: connect
    servers:
      - name: a
        address: 127.0.0.1:9
        weight: 3
        max_connections: 40
        backup: false
      - {name: b, address: "[::1]:10", backup: true, weight: 0}
"""


def schema_keys():
    """Every key name of config/config.c's schema tables."""
    with open(os.path.join(h.SOURCE_ROOT, 'config', 'config.c')) as f:
        text = f.read()
    return set(re.findall(r'\bK_(?:UINT|DUR|BOOL|ENUM|NAME|HOST|STR)\('
                          r'[^,]+, "(\w+)"', text)) | set(re.findall(
                              r'\bK_(?:MAP|FUNC)\("(\w+)"', text))


class ConfigCliTest(unittest.TestCase):
    def run_t(self, text, name='smtpfront.yaml'):
        d = tempfile.mkdtemp(prefix='sfcli-')
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', d]))
        path = os.path.join(d, name)
        with open(path, 'w') as f:
            f.write(text)
        p = subprocess.run([h.SMTPFRONT_BIN, '-t', '-c', path],
                           capture_output=True, text=True, timeout=30)
        return p, path

    def test_valid(self):
        p, path = self.run_t(VALID % h.free_port())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('configuration is valid', p.stderr)

    def test_every_error_with_position(self):
        p, path = self.run_t(TWO_ERRORS)
        self.assertEqual(p.returncode, 1, p.stderr)
        errs = re.findall(r'^%s:(\d+):(\d+): (.*)$' % re.escape(path),
                          p.stderr, re.M)
        got = {(int(l), int(c)) for l, c, _ in errs}
        self.assertIn((5, 11), got, p.stderr)    # the unknown pool
        self.assertIn((6, 21), got, p.stderr)    # the bad duration
        self.assertRegex(p.stderr, r'unknown pool "nosuchpool"')

    def test_syntax_error(self):
        p, path = self.run_t('listeners: [\n  - {name: x\n')
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r'^%s:\d+:\d+: ' % re.escape(path))

    def test_missing_file(self):
        p = subprocess.run([h.SMTPFRONT_BIN, '-t', '-c', '/nonexistent/x'],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn('/nonexistent/x', p.stderr)

    def test_unknown_user(self):
        p, _ = self.run_t('user: no-such-user-here\n' + VALID % 2525)
        self.assertEqual(p.returncode, 1)
        self.assertIn('user "no-such-user-here" does not exist', p.stderr)

    def test_unknown_control_group(self):
        p, _ = self.run_t('control:\n  group: no-such-group-here\n' +
                          VALID % 2525)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn('control.group "no-such-group-here" does not exist',
                      p.stderr)
        self.assertIn('configuration is invalid', p.stderr)

    # issue 20: -n prints the effective configuration, which -t accepts

    def run_n(self, text):
        d = tempfile.mkdtemp(prefix='sfcli-')
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', d]))
        path = os.path.join(d, 'smtpfront.yaml')
        with open(path, 'w') as f:
            f.write(text)
        return subprocess.run([h.SMTPFRONT_BIN, '-n', '-c', path],
                              capture_output=True, text=True, timeout=30)

    def body(self, dump):
        # the first line names the file it came from
        self.assertTrue(dump.startswith('# the effective configuration of '),
                        dump[:200])
        return dump.split('\n', 1)[1]

    def test_n_prints_defaults_and_round_trips(self):
        p = self.run_n(VALID % 2525)
        self.assertEqual(p.returncode, 0, p.stderr)
        # the defaults, as smtpfront.yaml(5) gives them
        for line in ('shutdown_timeout: 1m', 'sandbox: true',
                     '  level: info', '  mode: "0600"',
                     '    max_connections: 10000', '    client_timeout: 10m',
                     '    balance: roundrobin', '      interval: 2s',
                     '      rise: 2', '      fall: 3', '    retries: 2',
                     '        weight: 1', '# user: not set'):
            self.assertIn('\n' + line + '\n', p.stdout)
        first = self.body(p.stdout)
        again = self.run_n(p.stdout)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(self.body(again.stdout), first)
        t, _ = self.run_t(p.stdout)
        self.assertEqual(t.returncode, 0, t.stderr)
        self.assertIn('configuration is valid', t.stderr)

    def test_n_prints_every_key_and_round_trips_them(self):
        text = FULL % {'port': h.free_port(), 'mport': h.free_port()}
        p = self.run_n(text)
        self.assertEqual(p.returncode, 0, p.stderr)
        printed = set(re.findall(r'^\s*(?:- )?(\w+):', p.stdout, re.M))
        keys = schema_keys()
        self.assertGreater(len(keys), 40)
        self.assertEqual(sorted(keys - printed - {'p'}), [])
        # what was set comes back as set
        for line in ('workers: 3', 'user: "nobody"', 'shutdown_timeout: 90s',
                     'state_directory: "/var/lib/smtpfront-test"',
                     'sandbox: false', '  facility: local3',
                     '  syslog_socket: "/run/test-log"', '  mode: "0660"',
                     '  admin_group: "adm"',
                     '    client_limit_exceptions: ["192.0.2.0/28", '
                     '"2001:db8::/48"]', '    deny: ["198.51.100.7/32"]',
                     '    trusted_proxies: ["10.0.0.0/8"]',
                     '    proxy_timeout: 1500ms', '    client_timeout: 2h',
                     '      ipv4: 16', '    proxy_protocol: v1',
                     '      check: connect', '      - name: "b"',
                     '        address: "[::1]:10"', '        backup: true',
                     '        weight: 0'):
            self.assertIn('\n' + line + '\n', p.stdout)
        self.assertRegex(p.stdout, r'\n    bind: \["127\.0\.0\.1:\d+", '
                         r'"\[::1\]:\d+"\]\n')
        again = self.run_n(p.stdout)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(self.body(again.stdout), self.body(p.stdout))

    def test_n_of_a_bad_file_prints_nothing(self):
        p = self.run_n(TWO_ERRORS)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, '')
        self.assertIn('unknown pool "nosuchpool"', p.stderr)

    # issue 20: workers that would stay root are named, by -t and at start
    ROOT_WARNING = (r'warning: no user: key: the workers and the health '
                    r'process')

    def test_t_warns_without_user(self):
        p, path = self.run_t(VALID % 2525)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr, r'^%s: %s' % (re.escape(path),
                                                   self.ROOT_WARNING))
        self.assertIn('set user: to an unprivileged account', p.stderr)

    def test_t_warns_of_a_uid_0_user(self):
        p, _ = self.run_t('user: root\n' + VALID % 2525)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('warning: user: names a uid 0 account', p.stderr)

    def test_t_quiet_with_an_unprivileged_user(self):
        p, _ = self.run_t('user: nobody\n' + VALID % 2525)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn('run as root', p.stderr)
        self.assertNotIn('stay root', p.stderr)

    @unittest.skipUnless(os.geteuid() == 0, 'needs root: the start warns '
                         'only when started as root')
    def test_start_as_root_warns_without_user(self):
        with h.Smtpfront(VALID % h.free_port()) as sf:
            sf.wait_ready()
            sf.wait_log(self.ROOT_WARNING + r'.* run as root', 10)
            self.assertEqual(sf.stop(), 0)

    def test_ctl_server_argument_names_pool_server(self):
        # a bad argument: one line naming POOL/SERVER, not the whole usage
        for cmd in ('drain', 'enable', 'disable'):
            p = subprocess.run([h.SMTPFRONTCTL_BIN, '-s', '/nonexistent',
                                cmd, 'mx2'], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual(p.stderr, 'smtpfrontctl: usage: smtpfrontctl '
                             '%s POOL/SERVER ("mx2" names no pool; see '
                             'smtpfrontctl status)\n' % cmd)
        p = subprocess.run([h.SMTPFRONTCTL_BIN, '-s', '/nonexistent',
                            'drain'], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.stderr, 'smtpfrontctl: usage: smtpfrontctl drain '
                         'POOL/SERVER\n')

    @unittest.skipUnless(os.geteuid() == 0, 'needs root to switch users')
    def test_children_drop_privileges(self):
        import pwd
        nobody = pwd.getpwnam('nobody').pw_uid
        port = h.free_port()
        with h.Smtpfront('user: nobody\ngroup: nogroup\nworkers: 2\n'
                         'log:\n  level: debug\n' + VALID % port) as sf:
            sf.wait_ready()
            # Two workers and the health process, all as nobody: each
            # logs that it started once it has switched users.
            for what in (r'worker 0 started', r'worker 1 started',
                         r'health process started'):
                sf.wait_log(what, 10)
            kids = sf.children()
            self.assertEqual(len(kids), 3, kids)
            for pid in kids:
                with open('/proc/%d/status' % pid) as f:
                    uids = re.search(r'^Uid:\s+(.*)$', f.read(), re.M)
                self.assertEqual(set(map(int, uids.group(1).split())),
                                 {nobody}, pid)
            self.assertEqual(os.stat('/proc/%d' % sf.pid).st_uid, 0)
            self.assertEqual(sf.stop(), 0)


if __name__ == '__main__':
    h.main()
