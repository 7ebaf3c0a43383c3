# SPDX-License-Identifier: MIT
"""Restarts that keep the listeners and binary upgrades in place (issue 17).

- systemd's handover, emulated: smtpfront started with LISTEN_FDS,
  LISTEN_FDNAMES and LISTEN_PID naming sockets the test bound and listened
  on. A connection already waiting in the backlog is served; the bind the
  config has but the handover lacks is bound; a handed socket no bind wants
  is closed (its port refuses afterwards); FDSTORE=1 messages with the
  names come back on NOTIFY_SOCKET with the listening sockets attached,
  and FDSTOREREMOVE=1 for the stray one.
- Binary upgrade under load (a loop of mail sessions from four threads
  counting connect errors and failed sessions, 100 sessions idle between
  transactions, 10 uploads sending 1 KiB every 300 ms): 20 upgrades in a
  row alternating between the built binary and a copy at another path:
  no refused connection, no failed session, the master's pid unchanged,
  /proc/PID/exe the binary asked for, a new session served by a worker of
  the new generation each time; afterwards the idle sessions and uploads
  finish normally.
- An upgrade whose new image cannot start a generation (broken config)
  answers the errors; the workers that were serving go on, under the new
  image; a fixed config then upgrades.
- A new binary that cannot read the state's format (test override) hands
  it back: the previous image answers "refused" and keeps serving; a
  crafted state in another format, or cut short, is refused by a starting
  smtpfront with a clear error; an exec that fails leaves the running image as it was.
- Admin state, health, counters, uptime and the metrics socket cross the
  exec, and the new image applies a changed config (a listener added).
- SIGUSR2 upgrades to the binary the master was started from.
"""

import array
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import unittest

import sfharness as h

TIMEOUT = 15


def listening(port, backlog=16):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port))
    s.listen(backlog)
    return s


def recv_fds(sock, maxfds=8):
    """One datagram and the descriptors it carries."""
    fds = array.array('i')
    msg, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(maxfds * 4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % 4)])
    return msg.decode(), list(fds)


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
class ListenFdsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sftest-upgrade-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.backend = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(self.backend.stop)

    def test_handed_sockets_are_used_and_the_backlog_served(self):
        p1, p2, p3 = h.free_port(), h.free_port(), h.free_port()
        s1, s3 = listening(p1), listening(p3)
        # Waiting in s1's backlog before smtpfront exists.
        early = socket.create_connection(('127.0.0.1', p1), timeout=TIMEOUT)
        self.addCleanup(early.close)
        # Where the child's fds 3 and 4 come from: out of the way of both.
        hi1, hi3 = os.dup(s1.fileno()), os.dup(s3.fileno())
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        npath = os.path.join(self.tmp, 'notify')
        notify.bind(npath)
        notify.settimeout(TIMEOUT)
        self.addCleanup(notify.close)
        cfg = h.make_config_dict(p1, [('b1', self.backend.port)],
                                 listener={'bind': ['127.0.0.1:%d' % p1,
                                                    '127.0.0.1:%d' % p2]},
                                 health={'check': 'connect'})
        script = ('export LISTEN_PID=$$ LISTEN_FDS=2 '
                  'LISTEN_FDNAMES=127.0.0.1_%d:stray; '
                  'exec "$@" 3<&%d 4<&%d %d<&- %d<&-' % (p1, hi1, hi3, hi1, hi3))
        sf = h.Smtpfront(cfg, wrapper=['sh', '-c', script, 'sh'],
                         pass_fds=(hi1, hi3),
                         env=dict(os.environ, NOTIFY_SOCKET=npath))
        self.addCleanup(sf.__exit__, None, None, None)
        os.close(hi1)
        os.close(hi3)
        s1.close()
        s3.close()
        sf.wait_ready(TIMEOUT)
        sf.wait_log(r'listening on \[127\.0\.0\.1\]:%d with the socket '
                    r'handed over as 127\.0\.0\.1_%d' % (p1, p1))
        sf.wait_log(r'closing the inherited socket stray')
        # The connection that queued before smtpfront started is served.
        early.settimeout(TIMEOUT)
        banner = early.recv(512)
        self.assertTrue(banner.startswith(b'220'), banner)
        early.sendall(b'QUIT\r\n')
        self.assertIn(b'221', early.recv(512))
        early.close()
        # The bind the handover lacked was bound.
        c = h.smtp_session('127.0.0.1', p2)
        self.assertEqual(c.quit()[0], 221)
        # The stray socket is closed in smtpfront too: its port refuses.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(('127.0.0.1', p3), timeout=TIMEOUT)
        # Both listeners are offered to the store under their names.
        got, removed = {}, []
        while len(got) < 2 or not removed:
            msg, fds = recv_fds(notify)
            lines = msg.split('\n')
            if 'FDSTOREREMOVE=1' in lines:
                removed += [l[len('FDNAME='):] for l in lines
                            if l.startswith('FDNAME=')]
            for fd in fds:
                f = socket.socket(fileno=fd)
                if 'FDSTORE=1' in lines:
                    name = [l for l in lines if l.startswith('FDNAME=')]
                    got[name[0][len('FDNAME='):]] = f.getsockname()[1]
                f.close()
        self.assertEqual(got, {'[127.0.0.1]_%d' % p1: p1,
                               '[127.0.0.1]_%d' % p2: p2})
        # The stray one leaves the store too: nobody would serve it.
        self.assertEqual(removed, ['stray'])
        sf.stop_checked(self)


def metric(text, name, **labels):
    want = ','.join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.split('\n'):
        if line.startswith(name + ('{%s}' % want if want else '') + ' '):
            return float(line.split()[-1])
    return None


class Load:
    """Mail sessions in a loop from a few threads: one message each, then
    QUIT. Counts the sessions that got 221, the connections that failed
    (refused, reset, timed out) and the sessions that did not end well."""

    def __init__(self, port, threads):
        self.port = port
        self.cond = threading.Condition()
        self.ok = 0
        self.connect_errors, self.failures = [], []
        self.stopping = False
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(threads)]
        for t in self.threads:
            t.start()

    def session(self):
        try:
            c = smtplib.SMTP(timeout=TIMEOUT)
            c.connect('127.0.0.1', self.port)
        except (OSError, smtplib.SMTPException) as e:
            return 'connect', repr(e)
        try:
            c.ehlo('load.test')
            c.sendmail('load@client.test', ['b@example.org'],
                       'Subject: load\r\n\r\nbody\r\n')
            code = c.quit()[0]
            return (None, None) if code == 221 else ('quit', code)
        except (OSError, smtplib.SMTPException) as e:
            c.close()
            return 'session', repr(e)

    def run(self):
        while True:
            with self.cond:
                if self.stopping:
                    return
            where, what = self.session()
            with self.cond:
                if where is None:
                    self.ok += 1
                elif where == 'connect':
                    self.connect_errors.append(what)
                else:
                    self.failures.append((where, what))
                self.cond.notify_all()

    def wait_ok(self, n, timeout):
        with self.cond:
            k = self.ok
            return self.cond.wait_for(lambda: self.ok >= k + n, timeout)

    def stop(self):
        with self.cond:
            self.stopping = True
        for t in self.threads:
            t.join(TIMEOUT)


class Idle:
    """A session between transactions: greeted, EHLO done, then quiet."""

    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port),
                                             timeout=TIMEOUT)
        self.f = self.sock.makefile('rb')
        self.expect(b'220')
        self.sock.sendall(b'EHLO idle.test\r\n')
        self.expect(b'250')

    def expect(self, code):
        while True:
            line = self.f.readline()
            if not line:
                raise AssertionError('connection closed, wanted %r' % code)
            if not line.startswith(code):
                raise AssertionError('got %r, wanted %r' % (line, code))
            if line[3:4] == b' ':
                return line

    def finish(self):
        self.sock.sendall(b'NOOP\r\n')
        self.expect(b'250')
        self.sock.sendall(b'QUIT\r\n')
        self.expect(b'221')
        self.sock.close()


class Upload(threading.Thread):
    """A message sent 1 KiB every 300 ms until stopped, then ended."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop, self.result, self.chunks = port, stop, None, 0
        self.cond = threading.Condition()

    def wait_chunk(self, than, timeout):
        """Until more than `than` chunks went out (or it ended)."""
        with self.cond:
            return self.cond.wait_for(
                lambda: self.chunks > than or self.result is not None,
                timeout)

    def run(self):
        try:
            s = Idle(self.port)
            for cmd in (b'MAIL FROM:<up@client.test>', b'RCPT TO:<b@example.org>'):
                s.sock.sendall(cmd + b'\r\n')
                s.expect(b'250')
            s.sock.sendall(b'DATA\r\n')
            s.expect(b'354')
            s.sock.sendall(b'Subject: slow\r\n\r\n')
            while not self.stop.wait(0.3):
                s.sock.sendall((b'x' * 1022) + b'\r\n')
                with self.cond:
                    self.chunks += 1
                    self.cond.notify_all()
            s.sock.sendall(b'.\r\n')
            s.expect(b'250')
            s.sock.sendall(b'QUIT\r\n')
            s.expect(b'221')
            s.sock.close()
            self.result = 'ok'
        except Exception as e:          # reported by the test
            self.result = repr(e)
        with self.cond:
            self.cond.notify_all()


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
class UpgradeTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = 60

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sftest-upgrade-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.backend = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(self.backend.stop)
        # "A rebuilt binary": the same one at another path, so
        # /proc/PID/exe tells which image runs.
        self.copy = os.path.join(self.tmp, 'smtpfront-next')
        shutil.copy2(h.SMTPFRONT_BIN, self.copy)

    def start(self, **kw):
        self.port = h.free_port()
        kw.setdefault('health', {'check': 'connect'})
        # Old workers keep their idle sessions for the whole test.
        kw.setdefault('shutdown_timeout', '120s')
        self.cfg = h.make_config_dict(self.port, [('b1', self.backend.port)],
                                      **kw)
        sf = h.Smtpfront(self.cfg)
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready(TIMEOUT)
        return sf

    def exe(self, sf):
        return os.readlink('/proc/%d/exe' % sf.pid)

    def upgrade(self, sf, *args):
        return self.ctl(sf, 'upgrade', *args)

    def listener_inode(self):
        with open('/proc/net/tcp') as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if (fields[1].endswith(':%04X' % self.port) and
                        fields[3] == '0A'):
                    return fields[9]
        raise AssertionError('no listening socket on port %d' % self.port)

    def holds(self, pid, inode):
        try:
            fds = os.listdir('/proc/%d/fd' % pid)
        except FileNotFoundError:
            return False
        for fd in fds:
            try:
                if os.readlink('/proc/%d/fd/%s' % (pid, fd)) == \
                        'socket:[%s]' % inode:
                    return True
            except FileNotFoundError:
                pass
        return False

    def served_by(self, sf, generation):
        """One session: the pid of the worker that served it is one of
        generation's. Once the retiring workers closed their copies of the
        listener (SIGTERM tells them; the answer does not wait for it)."""
        inode = self.listener_inode()
        h.poll_until(lambda: [w['pid'] for w in self.status(sf)['workers']
                              if w['draining'] and self.holds(w['pid'], inode)],
                     lambda l: l == [], 'retiring workers stop listening')
        c = h.smtp_session('127.0.0.1', self.port)
        cport = c.sock.getsockname()[1]
        self.assertEqual(c.ehlo()[0], 250)
        self.assertEqual(c.quit()[0], 221)
        m = sf.wait_log(r'smtpfront\[(\d+)\]: session client=\[127\.0\.0\.1\]'
                        r':%d ' % cport)
        pids = {w['pid'] for w in self.status(sf)['workers']
                if w['generation'] == generation and not w['draining']}
        self.assertIn(int(m.group(1)), pids)

    def test_twenty_upgrades_under_load_lose_nothing(self):
        sf = self.start()
        master_pid = sf.pid
        idle = [Idle(self.port) for _ in range(100)]
        stop = threading.Event()
        uploads = [Upload(self.port, stop) for _ in range(10)]
        for u in uploads:
            u.start()
        load = Load(self.port, threads=4)
        try:
            self.assertTrue(load.wait_ok(20, TIMEOUT), load.failures[:3])
            for i in range(20):
                binary = self.copy if i % 2 == 0 else h.SMTPFRONT_BIN
                r = self.upgrade(sf, binary)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertRegex(r.stdout, r'ok: generation %d, smtpfront '
                                 r'\S+ \(%s\)' % (i + 2, re.escape(binary)))
                self.assertEqual(sf.proc.poll(), None)
                self.assertEqual(sf.pid, master_pid)
                self.assertEqual(self.exe(sf), binary)
                self.served_by(sf, i + 2)
                # The load goes on through each image, and each upload
                # sends a chunk to it.
                self.assertTrue(load.wait_ok(5, TIMEOUT),
                                load.failures[:3])
                for u in uploads:
                    self.assertTrue(u.wait_chunk(u.chunks, TIMEOUT),
                                    u.result)
        finally:
            stop.set()
            load.stop()
        for u in uploads:
            u.join(TIMEOUT)
        print('\nupgrades: 20; sessions %d ok, %d failed, %d connect '
              'errors; uploads %s ok; idle %d' % (
                  load.ok, len(load.failures), len(load.connect_errors),
                  [u.result for u in uploads].count('ok'), len(idle)))
        self.assertEqual(load.connect_errors, [])
        self.assertEqual(load.failures, [])
        self.assertEqual([u.result for u in uploads], ['ok'] * 10)
        self.assertTrue(all(u.chunks >= 20 for u in uploads),
                        [u.chunks for u in uploads])
        for s in idle:
            s.finish()
        st = self.status(sf)
        self.assertEqual(st['generation'], 21)
        m = self.ctl(sf, 'metrics').stdout
        self.assertEqual(metric(m, 'smtpfront_upgrades_total', result='ok'),
                         20)
        self.assertEqual(metric(m, 'smtpfront_worker_restarts_total'), 0)
        sf.stop_checked(self, timeout=60)

    def test_broken_config_keeps_the_serving_workers(self):
        sf = self.start()
        before = sorted(w['pid'] for w in self.status(sf)['workers'])
        ok = h.to_yaml(self.cfg) + '\n'
        sf.write_config(ok + 'no_such_key: 1\n')
        r = self.upgrade(sf, self.copy)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn('no_such_key', r.stderr)
        self.assertIn('upgrade failed; generation 1 keeps running',
                      r.stderr)
        # The new image runs, with the workers the old one started.
        self.assertEqual(self.exe(sf), self.copy)
        st = self.status(sf)
        self.assertEqual(st['generation'], 1)
        self.assertEqual(sorted(w['pid'] for w in st['workers']), before)
        self.assertFalse(any(w['draining'] for w in st['workers']))
        self.served_by(sf, 1)
        # They are its own: one that dies is respawned.
        os.kill(before[0], signal.SIGKILL)
        sf.wait_log(r'worker \d+ \(pid %d\) killed by signal 9; '
                    r'respawning' % before[0])
        self.wait_status(sf, lambda s: len([
            w for w in s['workers'] if w['generation'] == 1]) == 2,
            'two workers of generation 1')
        sf.write_config(ok)
        r = self.upgrade(sf, h.SMTPFRONT_BIN)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('ok: generation 2', r.stdout)
        self.served_by(sf, 2)
        m = self.ctl(sf, 'metrics').stdout
        self.assertEqual(metric(m, 'smtpfront_upgrades_total',
                                result='failed'), 1)
        self.assertEqual(metric(m, 'smtpfront_upgrades_total', result='ok'),
                         1)
        sf.stop_checked(self)

    def test_unreadable_state_is_handed_back(self):
        sf = self.start()
        before = sorted(w['pid'] for w in self.status(sf)['workers'])
        wrapper = os.path.join(self.tmp, 'smtpfront-format-99')
        with open(wrapper, 'w') as f:
            f.write('#!/bin/sh\nSMTPFRONT_TEST_HANDOVER_FORMAT=99 exec %s '
                    '"$@"\n' % self.copy)
        os.chmod(wrapper, 0o755)
        r = self.upgrade(sf, wrapper)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn('cannot read the state handed over: it is in format '
                      '1, this binary reads format 99', r.stderr)
        self.assertEqual(self.exe(sf), h.SMTPFRONT_BIN)
        st = self.status(sf)
        self.assertEqual(st['generation'], 1)
        self.assertEqual(sorted(w['pid'] for w in st['workers']), before)
        self.served_by(sf, 1)
        m = self.ctl(sf, 'metrics').stdout
        self.assertEqual(metric(m, 'smtpfront_upgrades_total',
                                result='refused'), 1)
        # Nothing was lost: the next upgrade works.
        r = self.upgrade(sf, self.copy)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.served_by(sf, 2)
        sf.stop_checked(self)

    def test_exec_failure_leaves_the_running_image(self):
        sf = self.start()
        bogus = os.path.join(self.tmp, 'not-a-binary')
        with open(bogus, 'wb') as f:
            f.write(b'\x00\x01 not an executable format\n')
        os.chmod(bogus, 0o755)
        r = self.upgrade(sf, bogus)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r'cannot execute %s: .*; smtpfront \S+ '
                         r'goes on' % re.escape(bogus))
        self.assertEqual(self.exe(sf), h.SMTPFRONT_BIN)
        self.served_by(sf, 1)
        m = self.ctl(sf, 'metrics').stdout
        self.assertEqual(metric(m, 'smtpfront_upgrades_total',
                                result='exec_failed'), 1)
        sf.stop_checked(self)

    def test_state_crosses_and_the_new_config_applies(self):
        """Admin state, health, counters, uptime and the metrics socket
        cross the exec; the new image applies the new config as a reload
        does (a listener added)."""
        b2 = h.Backend(mode='normal', proxy='v2', name='b2')
        self.addCleanup(b2.stop)
        mport = h.free_port()
        self.port = h.free_port()
        self.cfg = h.make_config_dict(
            self.port, [('b1', self.backend.port), ('b2', b2.port)],
            health={'check': 'connect'}, shutdown_timeout='120s',
            metrics={'bind': '127.0.0.1:%d' % mport})
        sf = h.Smtpfront(self.cfg)
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready(TIMEOUT)
        self.assertEqual(self.ctl(sf, 'drain', 'pool/b2').returncode, 0)
        self.wait_status(sf, lambda st: all(
            s['health'] == 'up' for p in st['pools'] for s in p['servers']),
            'both servers up')
        for _ in range(4):
            c = h.smtp_session('127.0.0.1', self.port)
            self.assertEqual(c.quit()[0], 221)
        ok = 'smtpfront_sessions_total{listener="smtp",result="ok"}'
        before = h.poll_until(lambda: self.ctl(sf, 'metrics').stdout,
                              lambda m: metric(m, ok.split('{')[0],
                                               listener='smtp', result='ok')
                              == 4, 'four sessions counted')
        up_before = self.status(sf)['uptime_s']
        port2 = h.free_port()
        cfg = dict(self.cfg)
        cfg['listeners'] = self.cfg['listeners'] + [
            {'name': 'extra', 'bind': ['127.0.0.1:%d' % port2],
             'pool': 'pool'}]
        sf.write_config(cfg)
        r = self.upgrade(sf, self.copy)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        st = self.status(sf)
        self.assertEqual(st['generation'], 2)
        self.assertGreaterEqual(st['uptime_s'], up_before)
        servers = {s['name']: s for s in st['pools'][0]['servers']}
        self.assertEqual(servers['b2']['admin'], 'drain')
        self.assertEqual(servers['b1']['health'], 'up')
        self.assertEqual(servers['b1']['total'], 4)
        # The same metrics socket, the counters going on.
        with socket.create_connection(('127.0.0.1', mport),
                                      timeout=TIMEOUT) as m:
            m.sendall(b'GET /metrics HTTP/1.0\r\n\r\n')
            text = b''
            while True:
                chunk = m.recv(65536)
                if not chunk:
                    break
                text += chunk
        text = text.decode()
        self.assertEqual(metric(text, 'smtpfront_sessions_total',
                                listener='smtp', result='ok'), 4)
        self.assertEqual(metric(text, 'smtpfront_upgrades_total',
                                result='ok'), 1)
        # The listener the new config added serves, never through the
        # drained b2.
        for _ in range(4):
            c = h.smtp_session('127.0.0.1', port2)
            self.assertEqual(c.quit()[0], 221)
        got = sf.wait_sessions(4, pred=lambda s: s.get('listener') == 'extra')
        self.assertEqual({s['server'] for s in got}, {'pool/b1'})
        sf.stop_checked(self)

    def test_sigusr2_upgrades_to_the_started_binary(self):
        sf = self.start()
        r = self.upgrade(sf, self.copy)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        mark = sf.mark()
        os.kill(sf.pid, signal.SIGUSR2)
        sf.wait_log(r'upgrade: smtpfront \S+ \(%s\) runs generation 3'
                    % re.escape(h.SMTPFRONT_BIN), since=mark)
        self.assertEqual(self.exe(sf), h.SMTPFRONT_BIN)
        self.served_by(sf, 3)
        sf.stop_checked(self)

    def test_crafted_state_of_another_format_is_refused(self):
        path = os.path.join(self.tmp, 'state')
        with open(path, 'w') as f:
            f.write('smtpfront-handover 7\nversion 9.9\n')
        fd = os.open(path, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        port = h.free_port()
        cfg = h.make_config_dict(port, [('b1', self.backend.port)])
        sf = h.Smtpfront(cfg, pass_fds=(fd,), env=dict(
            os.environ, SMTPFRONT_HANDOVER=str(fd)))
        self.addCleanup(sf.__exit__, None, None, None)
        rc = sf.proc.wait(TIMEOUT)
        self.assertNotEqual(rc, 0)
        sf.wait_log(r'cannot read the state handed over: it is in format '
                    r'7, this binary reads format 1')
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)

    def test_truncated_state_is_refused(self):
        """The right format, cut short: not misread, refused."""
        path = os.path.join(self.tmp, 'state')
        with open(path, 'w') as f:
            f.write('smtpfront-handover 1\nversion 0.1.0\ngeneration 3\n'
                    'config 4000\nworkers: 2\n')
        fd = os.open(path, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        cfg = h.make_config_dict(h.free_port(), [('b1', self.backend.port)])
        sf = h.Smtpfront(cfg, pass_fds=(fd,), env=dict(
            os.environ, SMTPFRONT_HANDOVER=str(fd)))
        self.addCleanup(sf.__exit__, None, None, None)
        self.assertNotEqual(sf.proc.wait(TIMEOUT), 0)
        sf.wait_log(r'the state handed over is not readable: the state ends '
                    r'inside the configuration')


if __name__ == '__main__':
    h.main()
