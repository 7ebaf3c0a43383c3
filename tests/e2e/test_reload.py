# SPDX-License-Identifier: MIT
"""Reload (SPEC.md "Signals and lifecycle"): SIGHUP and `smtpfrontctl
reload` under continuous load lose no session and refuse no connection; the
generation counts up; an invalid config changes nothing and its errors are
logged and returned; a server that stays keeps its health and admin state;
listeners are added and removed; sessions of the old generation finish in
their draining worker; systemd hears RELOADING=1 then READY=1."""

import os
import re
import shutil
import signal
import socket
import subprocess
import unittest

import sfharness as h

TIMEOUT = 20
CTL = h.SMTPFRONTCTL_BIN


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class ReloadTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def backend(self, name, mode='normal'):
        b = h.Backend(mode=mode, proxy='v2', name=name)
        self.addCleanup(b.stop)
        return b

    def config(self, port, servers, **kw):
        kw.setdefault('health', {'check': 'smtp', 'interval': '200ms',
                                 'timeout': '2s'})
        return h.make_config_dict(port, servers, **kw)

    def start(self, cfg):
        sf = h.Smtpfront(cfg)
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        return sf

    def finish_mail(self, c):
        """RCPT, DATA and QUIT on a session held after MAIL FROM."""
        self.assertEqual(c.cmd('RCPT TO:<b@example.org>').code, 250)
        self.assertEqual(c.cmd('DATA').code, 354)
        self.assertEqual(c.cmd('hello\r\n.').code, 250)
        self.assertEqual(c.cmd('QUIT').code, 221)
        c.wait_close()
        c.close()

    @staticmethod
    def servers(doc):
        return {s['name']: s for p in doc['pools'] for s in p['servers']}

    def reload_ctl(self, sf, want_gen):
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('generation %d' % want_gen, r.stdout)

    def reload_hup(self, sf, want_gen):
        mark = sf.mark()
        os.kill(sf.pid, signal.SIGHUP)
        sf.wait_log(r'reload: generation %d running' % want_gen, TIMEOUT,
                    since=mark)

    # ------------------------------------------------------------ load

    def test_twenty_reloads_under_load_lose_nothing(self):
        b1, b2, b3 = (self.backend(n) for n in ('b1', 'b2', 'b3'))
        port = h.free_port()
        # Two configs that differ in servers and weights.
        cfg_a = self.config(port, [('b1', b1.port, {'weight': 1}),
                                   ('b2', b2.port, {'weight': 3})])
        cfg_b = self.config(port, [('b2', b2.port, {'weight': 1}),
                                   ('b3', b3.port, {'weight': 2})],
                            workers=1)
        sf = self.start(cfg_a)
        load = h.backend_load(port)
        self.addCleanup(load.stop)
        self.assertTrue(load.wait_ok(20, TIMEOUT))
        for i in range(20):
            gen = i + 2
            sf.write_config(cfg_b if i % 2 == 0 else cfg_a)
            if i % 2 == 0:
                self.reload_hup(sf, gen)
            else:
                self.reload_ctl(sf, gen)
            self.assertTrue(load.wait_ok(25, TIMEOUT))
        self.assertTrue(load.stop())
        self.assertEqual(load.failures, [])
        self.assertGreater(load.ok, 200)
        doc = self.wait_status(
            sf, lambda d: all(w['generation'] == 21 and not w['draining']
                              for w in d['workers']),
            'old generations drained')
        self.assertEqual(doc['generation'], 21)
        self.assertEqual(len(doc['workers']), 2)          # cfg_a's count
        self.assertEqual(set(self.servers(doc)), {'b1', 'b2'})
        # Every session the clients saw succeed reached a backend.
        got = sum(len(b.sessions(lambda s: s.get('messages') == '1'))
                  for b in (b1, b2, b3))
        self.assertGreaterEqual(got, load.ok)
        for b in (b1, b2, b3):
            self.assertGreater(len(b.sessions()), 0, b.name)
        self.assertFalse([l for l in sf.logs() if 'result=' in l and
                          'result=ok' not in l], 'a session failed')
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)

    # ------------------------------------------------------------ invalid

    def test_invalid_config_keeps_the_old_one(self):
        b1 = self.backend('b1')
        port = h.free_port()
        sf = self.start(self.config(port, [('b1', b1.port)]))
        with open(sf.config_path, 'a') as f:
            f.write('bogus_key: 1\nworkers: many\n')
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 1)
        self.assertIn('reload failed', r.stderr)
        where = sf.config_path + ':'
        errs = [l for l in r.stderr.splitlines() if l.startswith(where)]
        self.assertTrue(any('bogus_key' in l for l in errs), r.stderr)
        self.assertTrue(any('workers' in l for l in errs), r.stderr)
        for line in errs:       # each one logged too
            self.assertTrue(any(line in l for l in sf.logs()), line)
        sf.wait_log(r'reload failed: generation 1 keeps running')
        # SIGHUP with the same file: logged, nothing changes.
        mark = sf.mark()
        os.kill(sf.pid, signal.SIGHUP)
        sf.wait_log(r'reload failed: generation 1 keeps running',
                    since=mark)
        doc = self.status(sf)
        self.assertEqual(doc['generation'], 1)
        self.assertEqual(set(self.servers(doc)), {'b1'})
        self.assertTrue(all(w['generation'] == 1 for w in doc['workers']))
        with h.RawSMTP('127.0.0.1', port) as c:
            self.assertEqual(c.read_reply().code, 220)
            self.assertEqual(c.cmd('QUIT').code, 221)

    def test_errors_once_in_the_journal_under_execreload(self):
        """As the unit's ExecReload, smtpfrontctl writes to the journal the
        master writes to: each error is there once, from the master."""
        b1 = self.backend('b1')
        port = h.free_port()
        sf = self.start(self.config(port, [('b1', b1.port)]))
        with open(sf.config_path, 'a') as f:
            f.write('bogus_key: 1\n')
        journal = h.tempfile.TemporaryFile('w+')
        st = os.fstat(journal.fileno())
        env = dict(os.environ, JOURNAL_STREAM='%d:%d' % (st.st_dev,
                                                        st.st_ino))
        r = subprocess.run([h.SMTPFRONTCTL_BIN, '-s', sf.control_socket,
                            'reload'], stdout=subprocess.PIPE,
                           stderr=journal, env=env, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 1)
        journal.seek(0)
        said = journal.read()
        self.assertIn('reload failed', said)
        self.assertIn("the errors are in smtpfront's log", said)
        self.assertNotIn('bogus_key', said)
        line = sf.wait_log(r'reload: .*bogus_key', TIMEOUT).string
        self.assertEqual(sum(1 for l in sf.logs() if 'bogus_key' in l), 1,
                         line)

    def test_unbindable_listener_fails_the_reload(self):
        b1 = self.backend('b1')
        port = h.free_port()
        cfg = self.config(port, [('b1', b1.port)])
        sf = self.start(cfg)
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        taken = busy.getsockname()[1]
        cfg['listeners'].append({'name': 'extra', 'pool': 'pool',
                                 'bind': ['127.0.0.1:%d' % taken]})
        sf.write_config(cfg)
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 1)
        self.assertIn('listener extra: cannot listen on [127.0.0.1]:%d: '
                      'Address already in use' % taken, r.stderr)
        self.assertEqual(self.status(sf)['generation'], 1)
        with h.RawSMTP('127.0.0.1', port) as c:
            self.assertEqual(c.read_reply().code, 220)

    # ------------------------------------------------------------ state

    def test_unchanged_servers_keep_health_and_admin_state(self):
        b1, b2 = self.backend('b1'), self.backend('b2')
        dead = h.free_port()                 # nothing listens there
        port = h.free_port()
        cfg = self.config(port, [('b1', b1.port), ('b2', b2.port),
                                 ('gone', dead)])
        sf = self.start(cfg)
        doc = self.wait_status(
            sf, lambda d: self.servers(d)['gone']['health'] == 'down' and
            self.servers(d)['b1']['health'] == 'up', 'first checks')
        r = self.ctl(sf, 'drain', 'pool/b1')
        self.assertEqual(r.returncode, 0, r.stderr)
        reason = self.servers(doc)['gone']['reason']
        # b1: same; b2: new address (another backend); gone: weight only;
        # b4: new.
        b3 = self.backend('b3')
        b4 = self.backend('b4')
        cfg = self.config(port, [('b1', b1.port), ('b2', b3.port),
                                 ('gone', dead, {'weight': 5}),
                                 ('b4', b4.port)])
        cfg['pools']['pool']['health']['interval'] = '30s'
        sf.write_config(cfg)
        self.reload_ctl(sf, 2)
        srv = self.servers(self.status(sf))
        self.assertEqual(srv['b1']['admin'], 'drain')
        self.assertEqual(srv['b1']['health'], 'up')
        self.assertEqual(srv['gone']['health'], 'down')
        self.assertEqual(srv['gone']['reason'], reason)
        self.assertEqual(srv['gone']['weight'], 5)
        self.assertEqual(srv['b2']['address'], '[127.0.0.1]:%d' % b3.port)
        self.assertEqual(srv['b2']['admin'], 'ready')
        # Fresh servers start unknown (or already checked: never "down").
        self.assertIn(srv['b2']['health'], ('unknown', 'up'))
        self.assertIn(srv['b4']['health'], ('unknown', 'up'))
        self.wait_status(sf, lambda d: self.servers(d)['b4']['health'] ==
                         'up', 'new server checked')
        # The drained server gets no new sessions in generation 2.
        for _ in range(6):
            with h.RawSMTP('127.0.0.1', port) as c:
                self.assertEqual(c.read_reply().code, 220)
                c.cmd('QUIT')
        sf.wait_sessions(6)
        self.assertFalse([s for s in sf.sessions() if s['server'] == 'b1'])

    # ------------------------------------------------------------ listeners

    def test_listeners_added_and_removed(self):
        b1 = self.backend('b1')
        port, extra = h.free_port(), h.free_port()
        cfg = self.config(port, [('b1', b1.port)])
        sf = self.start(cfg)
        cfg['listeners'].append({'name': 'extra', 'pool': 'pool',
                                 'bind': ['127.0.0.1:%d' % extra]})
        sf.write_config(cfg)
        self.reload_hup(sf, 2)
        sf.wait_log(r'listeners 1 kept, 1 added, 0 removed')
        for p in (port, extra):
            with h.RawSMTP('127.0.0.1', p) as c:
                self.assertEqual(c.read_reply().code, 220)
        cfg['listeners'].pop()
        sf.write_config(cfg)
        self.reload_hup(sf, 3)
        sf.wait_log(r'listeners 1 kept, 0 added, 1 removed')
        # Gone once the old workers' copies are closed too.
        self.wait_status(sf, lambda d: all(w['generation'] == 3
                                           for w in d['workers']),
                         'old workers gone')
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(('127.0.0.1', extra), TIMEOUT).close()
        with h.RawSMTP('127.0.0.1', port) as c:
            self.assertEqual(c.read_reply().code, 220)

    def test_old_session_finishes_in_its_draining_worker(self):
        b1 = self.backend('b1')
        port = h.free_port()
        cfg = self.config(port, [('b1', b1.port)], workers=1)
        sf = self.start(cfg)
        c = h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply().code, 220)
        self.assertEqual(c.cmd('EHLO old.test').code, 250)
        self.assertEqual(c.cmd('MAIL FROM:<a@example.org>').code, 250)
        old = self.status(sf)['workers'][0]['pid']
        self.reload_ctl(sf, 2)
        doc = self.status(sf)
        by_pid = {w['pid']: w for w in doc['workers']}
        self.assertTrue(by_pid[old]['draining'])
        self.assertEqual(by_pid[old]['generation'], 1)
        self.assertEqual(by_pid[old]['active'], 1)
        # New sessions go to the new generation meanwhile.
        with h.RawSMTP('127.0.0.1', port) as n:
            self.assertEqual(n.read_reply().code, 220)
        self.finish_mail(c)
        sf.wait_log(r'worker \d+ \(pid %d, generation 1\) finished' % old)
        b1.wait_sessions(1, pred=lambda s: s.get('messages') == '1')

    def test_stop_while_draining_lets_old_sessions_finish(self):
        b1 = self.backend('b1')
        port = h.free_port()
        sf = self.start(self.config(port, [('b1', b1.port)], workers=1))
        c = h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply().code, 220)
        self.assertEqual(c.cmd('MAIL FROM:<a@example.org>').code, 250)
        self.reload_ctl(sf, 2)
        mark = sf.mark()
        os.kill(sf.pid, signal.SIGTERM)
        sf.wait_log(r'received .*: stopping', since=mark)
        # The draining worker is not told twice (that would cut it now).
        self.finish_mail(c)
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)
        b1.wait_sessions(1, pred=lambda s: s.get('messages') == '1')

    @staticmethod
    def sockets(pid):
        out = set()
        for fd in os.listdir('/proc/%d/fd' % pid):
            try:
                m = re.match(r'socket:\[(\d+)\]',
                             os.readlink('/proc/%d/fd/%s' % (pid, fd)))
            except OSError:
                continue
            if m:
                out.add(int(m.group(1)))
        return out

    def test_children_hold_only_what_they_use(self):
        # A child forked while a control connection is open (or being
        # closed) must not hold it, or smtpfrontctl waits for an EOF that
        # never comes; the health process needs no listener either.
        b1 = self.backend('b1')
        sf = self.start(self.config(h.free_port(), [('b1', b1.port)]))
        held = socket.socket(socket.AF_UNIX)
        self.addCleanup(held.close)
        held.connect(sf.control_socket)
        self.reload_hup(sf, 2)
        m = sf.wait_log(r'health process of generation 2 started as pid '
                        r'(\d+)')
        health = int(m.group(1))
        workers = [w['pid'] for w in self.status(sf)['workers']
                   if w['generation'] == 2]
        self.assertEqual(len(workers), 2)
        master = self.sockets(sf.pid)
        ss = subprocess.run(['ss', '-xapn'], capture_output=True,
                            text=True, check=True).stdout
        unix = {int(f[5]) for f in (l.split() for l in ss.splitlines())
                if len(f) > 5 and f[5].isdigit()}
        control = master & unix          # the control socket and our conn
        self.assertGreaterEqual(len(control), 2, ss)
        self.assertEqual(self.sockets(health) & master, set())
        for pid in workers:
            self.assertEqual(self.sockets(pid) & control, set(), pid)
            self.assertTrue(self.sockets(pid) & master, pid)   # listener

    def test_restart_only_settings_are_kept_and_logged(self):
        b1 = self.backend('b1')
        port = h.free_port()
        cfg = self.config(port, [('b1', b1.port)])
        sf = self.start(cfg)
        cfg['control'] = {'socket': '@DIR@/control.sock', 'mode': '0660'}
        cfg['user'] = 'nobody'
        sf.write_config(cfg)
        self.reload_ctl(sf, 2)
        sf.wait_log(r'reload: control.mode changed from 0600 to 0660: '
                    r'that needs a restart; keeping 0600')
        sf.wait_log(r'reload: user changed from "" to "nobody": that needs '
                    r'a restart')
        self.assertEqual(os.stat(sf.control_socket).st_mode & 0o777, 0o600)
        # Workers of generation 2 still run as the master's user.
        new = [w for w in self.status(sf)['workers']
               if w['generation'] == 2]
        self.assertEqual(len(new), 2)
        for w in new:
            with open('/proc/%d/status' % w['pid']) as f:
                uid = [l for l in f if l.startswith('Uid:')][0].split()[1]
            self.assertEqual(int(uid), os.getuid())

    def test_notify_reloading_then_ready(self):
        import tempfile
        d = tempfile.mkdtemp(prefix='sftest-notify-')
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'notify.sock')
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        sock.settimeout(TIMEOUT)
        b1 = self.backend('b1')
        sf = h.Smtpfront(self.config(h.free_port(), [('b1', b1.port)]),
                         env=dict(os.environ, NOTIFY_SOCKET=path))
        self.addCleanup(sf.__exit__, None, None, None)
        self.assertIn('READY=1', sock.recv(4096).decode().split('\n'))
        os.kill(sf.pid, signal.SIGHUP)
        self.assertIn('RELOADING=1', sock.recv(4096).decode().split('\n'))
        self.assertIn('READY=1', sock.recv(4096).decode().split('\n'))
        self.assertEqual(self.status(sf)['generation'], 2)


if __name__ == '__main__':
    h.main()
