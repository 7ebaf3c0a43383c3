# SPDX-License-Identifier: MIT
"""Control socket and smtpfrontctl (SPEC.md "Control socket"): the socket's
mode and group keep other users out; garbage, over-long and silent clients
are refused or closed while the master keeps serving; `status` is valid
JSON with every documented key and counts the sessions really open;
drain/enable steer new sessions; errors give messages and non-zero exits."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

import sfharness as h

TIMEOUT = 15
CTL = h.SMTPFRONTCTL_BIN

# issue 18: status shows what is limited and banned ('deny', and each
# listener's per-client limits, exemptions and static deny list).
STATUS_KEYS = {'version', 'uptime_s', 'generation', 'workers', 'listeners',
               'deny', 'pools'}
WORKER_KEYS = {'pid', 'generation', 'draining', 'active'}
LISTENER_KEYS = {'name', 'active', 'max_connections', 'sessions',
                 'max_connections_per_client',
                 'max_connection_rate_per_client', 'client_limit_exceptions',
                 'deny'}
RESULTS = {'ok', 'no-backend', 'overload', 'client-limit', 'client-rate',
           'denied', 'shutdown',
           'client-timeout', 'server-timeout', 'client-closed',
           'server-closed', 'greeting-failed', 'bad-proxy-header',
           'untrusted-proxy'}
POOL_KEYS = {'name', 'balance', 'servers'}
SERVER_KEYS = {'name', 'address', 'state', 'health', 'admin', 'weight',
               'backup', 'reason', 'check_ms', 'last_check_s', 'active',
               'total', 'failures',
               # issue 20
               'last_change_s', 'downtime_s', 'check_failures'}


def raw_request(path, data, shut=True, timeout=TIMEOUT):
    """Send data on a fresh connection; return (answer bytes, how) with
    how = 'eof' | 'reset'. A peer that closes while we still write is
    fine: what it answered is still read."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b''
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return out, 'reset'
            if not chunk:
                return out, 'eof'
            out += chunk
    finally:
        s.close()


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class ControlTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def start(self, backends=None, **cfg):
        if backends is None:
            b = h.Backend(mode='normal', proxy='v2', name='b1')
            self.addCleanup(b.stop)
            backends = [b]
        port = h.free_port()
        cfg.setdefault('health', {'check': 'connect'})
        sf = h.Smtpfront(h.make_config(
            port, [(b.name, b.port) for b in backends], **cfg))
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        sf.port = port
        return sf

    def client(self, sf):
        c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        return c

    def server(self, doc, name):
        (srv,) = [s for p in doc['pools'] for s in p['servers']
                  if s['name'] == name]
        return srv

    # ------------------------------------------------------------ access

    def test_socket_mode_and_group_keep_others_out(self):
        sf = self.start(control={'mode': '0660', 'group': 'mail'})
        st = os.stat(sf.control_socket)
        self.assertEqual(st.st_mode & 0o777, 0o660)
        self.assertEqual(st.st_gid, 8)          # mail
        # Let `nobody` reach the socket itself: only its mode decides.
        os.chmod(sf.dir, 0o755)
        binary = os.path.join(sf.dir, 'smtpfrontctl')
        shutil.copy(CTL, binary)
        os.chmod(binary, 0o755)
        outsider = ['setpriv', '--reuid=nobody', '--regid=nogroup',
                    '--clear-groups']
        r = self.ctl(sf, 'status', prefix=outsider, binary=binary)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('cannot connect to %s: Permission denied'
                      % sf.control_socket, r.stderr)
        member = ['setpriv', '--reuid=nobody', '--regid=nogroup',
                  '--groups=mail']
        r = self.ctl(sf, 'status', prefix=member, binary=binary)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('pool pool', r.stdout)

    def test_socket_missing(self):
        sf = self.start()
        missing = os.path.join(sf.dir, 'nothing-here.sock')
        r = self.ctl(sf, 'status', socket_path=missing)
        self.assertEqual(r.returncode, 1)
        self.assertIn('cannot connect to %s: No such file or directory '
                      '(is smtpfront running?)' % missing, r.stderr)

    def test_second_instance_refuses_a_live_socket(self):
        sf = self.start()
        b = h.Backend(mode='normal', proxy='v2', name='b2')
        self.addCleanup(b.stop)
        cfg = h.make_config(h.free_port(), [(b.name, b.port)],
                            control={'socket': sf.control_socket})
        other = h.Smtpfront(cfg)
        self.addCleanup(other.__exit__, None, None, None)
        self.assertNotEqual(other.proc.wait(TIMEOUT), 0)
        other.wait_log(r'another process answers on', TIMEOUT)
        # The first one still serves.
        self.assertEqual(self.status(sf)['generation'], 1)

    def test_stale_socket_is_replaced(self):
        d = self.enterContext_tmpdir()
        path = os.path.join(d, 'sub', 'ctl.sock')
        os.mkdir(os.path.join(d, 'sub'))
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)                # bound, never listening: stale
        stale.close()
        sf = self.start(control={'socket': path})
        sf.wait_log(r'removed the stale socket', TIMEOUT)
        r = self.ctl(sf, 'status', socket_path=path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)
        self.assertFalse(os.path.exists(path))

    def test_missing_parent_directories_are_created(self):
        d = self.enterContext_tmpdir()
        path = os.path.join(d, 'a', 'b', 'ctl.sock')
        sf = self.start(control={'socket': path})
        r = self.ctl(sf, 'status', socket_path=path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.stat(os.path.dirname(path)).st_mode & 0o777,
                         0o755)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)

    def enterContext_tmpdir(self):
        import tempfile
        d = tempfile.mkdtemp(prefix='sftest-ctl-')
        self.addCleanup(shutil.rmtree, d, True)
        return d

    # ------------------------------------------------------------ bad input

    def test_garbage_and_long_lines_are_refused(self):
        sf = self.start()
        ans, _ = raw_request(sf.control_socket, b'\x00\xff\xfe junk\r\n')
        doc = json.loads(ans)
        self.assertEqual(doc['ok'], False)
        self.assertIn('unknown command', doc['error'])
        ans, _ = raw_request(sf.control_socket, b'frobnicate "x\\y"\n')
        doc = json.loads(ans)
        self.assertIn('unknown command "frobnicate"', doc['error'])
        self.assertTrue(doc['error'].endswith(
            '(status, enable, disable, drain, reload, upgrade, metrics, '
            'deny)'), doc)
        # 4096 bytes before the newline is still a (wrong) command ...
        doc = json.loads(raw_request(sf.control_socket,
                                     b'x' * 4096 + b'\n')[0])
        self.assertIn('unknown command', doc['error'])
        # ... one more is too long.
        ans, _ = raw_request(sf.control_socket, b'x' * 4097 + b'\n')
        self.assertEqual(json.loads(ans.split(b'\n')[0]),
                         {'ok': False, 'error': 'request too long'})
        # A megabyte: an error answer or a close, never a hang.
        ans, how = raw_request(sf.control_socket, b'y' * (1 << 20))
        if ans:
            self.assertEqual(json.loads(ans.split(b'\n')[0]),
                             {'ok': False, 'error': 'request too long'})
        self.assertIsNone(sf.proc.poll())
        self.assertEqual(self.status(sf)['generation'], 1)
        # The SMTP side is untouched.
        c = self.client(sf)
        self.assertEqual(c.read_reply().code, 220)
        self.assertEqual(c.cmd('QUIT').code, 221)

    def raw_client(self, sf):
        s = socket.socket(socket.AF_UNIX)
        self.addCleanup(s.close)
        s.settimeout(TIMEOUT)
        s.connect(sf.control_socket)
        return s

    def test_silent_client_is_closed_after_5s(self):
        sf = self.start()
        s = self.raw_client(sf)
        t0 = time.monotonic()
        try:
            data = s.recv(100)          # blocks until the master closes
        except ConnectionResetError:
            data = b''
        waited = time.monotonic() - t0
        self.assertEqual(data, b'')
        self.assertGreater(waited, 4.0)
        self.assertLess(waited, 8.0)
        # Meanwhile (and after) other clients were served.
        self.assertEqual(self.status(sf)['generation'], 1)

    def test_trickling_client_gets_5s_in_all(self):
        sf = self.start()
        s = self.raw_client(sf)
        t0 = time.monotonic()
        closed = False
        # One byte every 0.5 s never leaves the connection silent for 5 s.
        while time.monotonic() - t0 < 12 and not closed:
            try:
                s.sendall(b's')
                s.settimeout(0.5)
                closed = s.recv(100) == b''
            except socket.timeout:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        waited = time.monotonic() - t0
        self.assertTrue(closed)
        self.assertGreater(waited, 4.0)
        self.assertLess(waited, 8.0)
        self.assertEqual(self.status(sf)['generation'], 1)

    def test_command_without_newline_then_eof_is_answered(self):
        sf = self.start()
        ans, how = raw_request(sf.control_socket, b'status')
        self.assertEqual(how, 'eof')
        self.assertEqual(json.loads(ans)['generation'], 1)

    # ------------------------------------------------------------ status

    def test_status_json_has_every_key_and_counts_open_sessions(self):
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        sf = self.start(backends=[b], workers=2)
        r = self.ctl(sf, 'status', '--json')
        self.assertEqual(r.returncode, 0, r.stderr)
        tool = subprocess.run([sys.executable, '-m', 'json.tool'],
                              input=r.stdout, capture_output=True,
                              text=True)
        self.assertEqual(tool.returncode, 0, tool.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(set(doc), STATUS_KEYS)
        self.assertEqual(doc['generation'], 1)
        self.assertEqual(len(doc['workers']), 2)
        for w in doc['workers']:
            self.assertEqual(set(w), WORKER_KEYS)
            self.assertIn(w['pid'], sf.children())
        (lst,) = doc['listeners']
        self.assertEqual(set(lst), LISTENER_KEYS)
        self.assertEqual((lst['name'], lst['max_connections']),
                         ('smtp', 10000))
        self.assertEqual(set(lst['sessions']), RESULTS)
        (pool,) = doc['pools']
        self.assertEqual(set(pool), POOL_KEYS)
        self.assertEqual((pool['name'], pool['balance']),
                         ('pool', 'roundrobin'))
        (srv,) = pool['servers']
        self.assertEqual(set(srv), SERVER_KEYS)
        self.assertEqual(srv['address'], '[127.0.0.1]:%d' % b.port)
        self.assertEqual((srv['admin'], srv['weight'], srv['backup']),
                         ('ready', 1, False))
        # Health arrives from the health process; then state follows it.
        doc = self.wait_status(sf, lambda d: self.server(d, 'b1')['health']
                               == 'up', 'server up')
        srv = self.server(doc, 'b1')
        self.assertEqual((srv['state'], srv['reason']), ('up', 'connect ok'))
        self.assertIsInstance(srv['check_ms'], float)
        self.assertGreaterEqual(srv['last_check_s'], 0)

        n = 5
        clients = []
        for _ in range(n):
            c = self.client(sf)
            self.assertEqual(c.read_reply().code, 220)
            clients.append(c)

        def counts(d):
            return (sum(w['active'] for w in d['workers']),
                    self.server(d, 'b1')['active'],
                    d['listeners'][0]['active'])
        doc = self.wait_status(sf, lambda d: counts(d) == (n, n, n),
                               '%d sessions counted' % n)
        for c in clients[:2]:
            self.assertEqual(c.cmd('QUIT').code, 221)
            self.assertEqual(c.wait_close(TIMEOUT)[1], 'eof')
        doc = self.wait_status(sf, lambda d: counts(d) == (n - 2, n - 2,
                                                           n - 2),
                               'two sessions ended')
        self.assertGreaterEqual(self.server(doc, 'b1')['total'], 2)
        # How the sessions since start ended: the two that quit.
        ended = {k: v for k, v in doc['listeners'][0]['sessions'].items()
                 if v}
        self.assertEqual(ended, {'ok': 2})
        # The human table shows the same.
        r = self.ctl(sf, 'status')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r'\nb1 +\[127\.0\.0\.1\]:%d +up ' % b.port)
        self.assertRegex(r.stdout, r'\nLISTENER +ACTIVE +MAX +SESSIONS SINCE '
                         r'START, BY RESULT\nsmtp +%d +10000 +2 ok\n' % (n - 2))

    # ------------------------------------------------------------ admin

    def greeted_by(self, c):
        return c.read_reply().text.split()[0]

    def test_drain_stops_new_sessions_and_lets_open_ones_finish(self):
        b1 = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b1.stop)
        b2 = h.Backend(mode='normal', proxy='v2', name='b2')
        self.addCleanup(b2.stop)
        sf = self.start(backends=[b1, b2], workers=1)
        # Roundrobin over two: two sessions reach both servers.
        first = [self.client(sf) for _ in range(2)]
        names = [self.greeted_by(c) for c in first]
        self.assertEqual(sorted(names), ['b1', 'b2'])
        on_b1 = first[names.index('b1')]

        r = self.ctl(sf, 'drain', 'pool/b1')
        self.assertEqual((r.returncode, r.stdout), (0, 'ok\n'), r.stderr)
        doc = self.status(sf)
        self.assertEqual((self.server(doc, 'b1')['state'],
                          self.server(doc, 'b1')['admin']),
                         ('drain', 'drain'))
        self.assertEqual(self.server(doc, 'b1')['active'], 1)
        for _ in range(4):
            c = self.client(sf)
            self.assertEqual(self.greeted_by(c), 'b2')
            self.assertEqual(c.cmd('QUIT').code, 221)
            c.close()
        # The session already on b1 goes on to its end.
        self.assertEqual(on_b1.cmd('EHLO me').code, 250)
        self.assertEqual(on_b1.cmd('QUIT').code, 221)
        self.assertEqual(on_b1.wait_close(TIMEOUT)[1], 'eof')

        r = self.ctl(sf, 'disable', 'pool/b2')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.server(self.status(sf), 'b2')['state'],
                         'maint')
        # Nothing usable: the 421 of SPEC.md "No backend".
        c = self.client(sf)
        self.assertEqual(c.read_reply().code, 421)

        r = self.ctl(sf, 'enable', 'pool/b1')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl(sf, 'enable', 'pool/b2')
        self.assertEqual(r.returncode, 0, r.stderr)
        got = set()
        for _ in range(4):
            c = self.client(sf)
            got.add(self.greeted_by(c))
            self.assertEqual(c.cmd('QUIT').code, 221)
            c.close()
        self.assertEqual(got, {'b1', 'b2'})
        doc = self.status(sf)
        self.assertEqual([self.server(doc, n)['admin'] for n in
                          ('b1', 'b2')], ['ready', 'ready'])

    def test_unknown_server_and_usage_errors(self):
        sf = self.start()
        r = self.ctl(sf, 'drain', 'pool/nope')
        self.assertEqual(r.returncode, 1)
        self.assertIn('unknown server pool/nope', r.stderr)
        r = self.ctl(sf, 'enable', 'nopool/b1')
        self.assertEqual(r.returncode, 1)
        self.assertIn('unknown server nopool/b1', r.stderr)
        for args in (['drain'], ['frob'], ['status', 'extra'], []):
            r = self.ctl(sf, *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn('usage:', r.stderr)
        self.assertEqual(self.server(self.status(sf), 'b1')['admin'],
                         'ready')


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
class NotifyTest(unittest.TestCase):
    """sd_notify without libsystemd: READY=1 once serving, STOPPING=1 on
    SIGTERM, to a path or an abstract ("@name") NOTIFY_SOCKET."""

    def run_with(self, address, env_value):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(address)
        sock.settimeout(TIMEOUT)
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        env = dict(os.environ, NOTIFY_SOCKET=env_value)
        sf = h.Smtpfront(h.make_config(h.free_port(), [(b.name, b.port)],
                                       health={'check': 'connect'}),
                         env=env)
        self.addCleanup(sf.__exit__, None, None, None)
        msg = sock.recv(4096).decode()
        self.assertIn('READY=1', msg.split('\n'))
        # READY comes once the listeners are bound and children started.
        sf.wait_ready()
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)
        self.assertEqual(sock.recv(4096), b'STOPPING=1')

    def test_path_socket(self):
        import tempfile
        d = tempfile.mkdtemp(prefix='sftest-notify-')
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'notify.sock')
        self.run_with(path, path)

    def test_abstract_socket(self):
        name = 'sftest-notify-%d' % os.getpid()
        self.run_with('\0' + name, '@' + name)


if __name__ == '__main__':
    h.main()
