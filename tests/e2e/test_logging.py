# SPDX-License-Identifier: MIT
"""Logging never blocks a session (SPEC.md "SMTP-aware behaviour", issue 16):
2,000 smtp-source sessions complete while smtpfront's stderr is a pipe
nobody reads, and again while syslog is a datagram socket nobody reads;
the lines that could not be written are counted in
smtpfront_log_dropped_total, and once the log is read again one line says
how many were dropped, and every session line is either in the log or in
that count. Also: syslog lines are RFC 3164 (<PRI>timestamp ident[pid]:),
and a syslog socket that goes away and comes back is connected again.

Each smtp-source run is bounded: a worker blocked on its log (what
syslog(3) and blocking stderr writes do) makes it time out, and the test
fails rather than hangs."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import sfharness as h

TIMEOUT = 20
SESSIONS = 2000
# smtp-source needs a few seconds for 2,000 sessions here (more under a
# sanitizer); a blocked worker never finishes them.
SOURCE_TIMEOUT = 60
SMTP_SOURCE = shutil.which('smtp-source') or '/usr/sbin/smtp-source'
CTL = h.SMTPFRONTCTL_BIN
DROPPED_RE = re.compile(r'smtpfront\[(\d+)\]: warning: log: (\d+) lines? '
                        r'dropped while the log was not taking them')
# mail.info = 2 * 8 + 6; mail.warning = 2 * 8 + 4.
SYSLOG_RE = re.compile(r'^<(\d+)>[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d '
                       r'smtpfront\[(\d+)\]: (.*)$')


class DatagramLog:
    """A syslog socket: a bound AF_UNIX datagram socket and a thread that
    reads it, which can stop reading (the socket's queue fills)."""

    def __init__(self, path):
        self.path = path
        self.cond = threading.Condition()
        self.lines = []
        self._gate = threading.Event()
        self._gate.set()
        self._idle = threading.Event()   # a read found the queue empty
        self._stop = False
        self._bind()

    def _bind(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, args=(self.sock,),
                                        daemon=True)
        self._thread.start()

    def _run(self, sock):
        while not self._stop:
            self._gate.wait()
            if self._stop:
                break
            try:
                data = sock.recv(65536)
            except socket.timeout:
                self._idle.set()
                continue
            except OSError:
                break
            with self.cond:
                self.lines.append(data.decode('utf-8', 'replace'))
                self.cond.notify_all()

    def pause(self):
        self._gate.clear()

    def resume(self):
        self._gate.set()

    def wait_drained(self, timeout):
        """Until the reader has found the socket's queue empty (its
        recv timed out) after this call."""
        self._idle.clear()
        if not self._idle.wait(timeout):
            raise AssertionError('the syslog socket was not drained '
                                 'within %ss' % timeout)

    def wait_for(self, regex, timeout, since=0):
        rx = re.compile(regex)
        found = []

        def match():
            for line in self.lines[since:]:
                m = rx.search(line)
                if m:
                    found.append(m)
                    return True
            return False
        with self.cond:
            if not self.cond.wait_for(match, timeout):
                raise AssertionError('no syslog line /%s/ within %ss; last:'
                                     '\n%s' % (regex, timeout, '\n'.join(
                                         self.lines[-20:])))
        return found[0]

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def close(self):
        self._stop = True
        self._gate.set()
        self._thread.join(5)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def rebind(self):
        """The syslog daemon restarts: its socket is gone, then a new one
        is bound at the same path."""
        self.close()
        self._stop = False
        self._bind()


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(os.access(SMTP_SOURCE, os.X_OK),
                     'smtp-source (postfix) not installed')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class LoggingTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def setUp(self):
        self.backend = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(self.backend.stop)
        self.port = h.free_port()

    def start(self, log):
        # One worker: every session line is its, so its one "dropped"
        # line accounts for all it lost.
        cfg = h.make_config_dict(self.port, [('b1', self.backend.port)],
                                 workers=1, log=log,
                                 health={'check': 'connect',
                                         'interval': '10s'})
        sf = h.Smtpfront(cfg, stderr_pipe_bytes=0)
        self.addCleanup(sf.stop_checked, self, TIMEOUT)
        return sf

    def source(self, n):
        """n smtp-source sessions (20 at a time); fails when they do not
        all complete within SOURCE_TIMEOUT."""
        t0 = time.monotonic()
        try:
            r = subprocess.run([SMTP_SOURCE, '-s', '20', '-m', str(n),
                                '-f', 'a@client.test', '-t', 'b@server.test',
                                '127.0.0.1:%d' % self.port],
                               capture_output=True, text=True,
                               timeout=SOURCE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail('%d smtp-source sessions did not complete within %d s: '
                      'a worker is blocked on its log' % (n, SOURCE_TIMEOUT))
        self.assertEqual(r.returncode, 0, r.stderr)
        return time.monotonic() - t0

    def metrics(self, sf):
        r = self.ctl(sf, 'metrics')
        self.assertEqual(r.returncode, 0, r.stderr)
        out = {}
        for line in r.stdout.splitlines():
            if line and not line.startswith('#'):
                name, value = line.rsplit(' ', 1)
                out[name] = float(value)
        return out

    def wait_ok(self, sf, n):
        """The metrics count n sessions ended ok."""
        key = 'smtpfront_sessions_total{listener="smtp",result="ok"}'
        return h.poll_until(lambda: self.metrics(sf),
                            lambda v: v.get(key, 0) >= n,
                            '%d sessions ok' % n, TIMEOUT)

    def check_stall(self, sf, pause, resume, drained, session_lines,
                    dropped_lines):
        """The common part: sessions complete while the log is not read,
        the drops are counted, and reported once it is read again."""
        # .get: a build without the counter fails below, after the sessions
        before = self.metrics(sf).get('smtpfront_log_dropped_total', 0)
        pause()
        took = self.source(SESSIONS)
        v = self.wait_ok(sf, SESSIONS)
        dropped = v['smtpfront_log_dropped_total'] - before
        print('%d sessions with the log not read: %.1f s, %d lines '
              'dropped' % (SESSIONS, took, dropped))
        self.assertGreater(dropped, 0)
        resume()
        self.source(20)
        # A burst right after the stall may still outrun the reader (a
        # datagram socket queues 10): those drops are told before the
        # next line that goes through, which this last session's is once
        # the reader has caught up.
        drained()
        self.source(1)
        total_sessions = SESSIONS + 21
        self.wait_ok(sf, total_sessions)
        # The worker's first line after a stall says how many it lost;
        # with its session lines that makes every session.
        deadline = time.monotonic() + TIMEOUT
        while True:
            seen, reports = session_lines(), dropped_lines()
            worker = {pid for pid, _ in seen}
            lost = sum(n for pid, n in reports if pid in worker)
            if reports and len(seen) + lost >= total_sessions:
                break
            if time.monotonic() > deadline:
                self.fail('after the stall: %d session lines, drops '
                          'reported %s, %d counted' % (len(seen), reports,
                                                       dropped))
            time.sleep(0.05)
        self.assertEqual(len(seen) + lost, total_sessions,
                         (len(seen), reports))
        self.assertGreater(lost, 0)
        total = self.metrics(sf)['smtpfront_log_dropped_total']
        self.assertLessEqual(sum(n for _, n in reports), total)
        self.assertEqual(lost, total - before)
        print('after the stall: %d session lines logged, %d reported '
              'dropped, %d counted' % (len(seen), lost, total - before))

    def test_stderr_a_pipe_nobody_reads(self):
        sf = self.start({'target': 'stderr', 'level': 'info'})
        sf.wait_ready(TIMEOUT)
        # The health process's one line, before the stall: then only the
        # worker has lines to drop.
        sf.wait_log(r'health: server pool/b1 is UP', TIMEOUT)

        def session_lines():
            return [(int(m.group(1)), 0) for m in (
                re.search(r'smtpfront\[(\d+)\]: session client=', line)
                for line in sf.logs()) if m]

        def dropped_lines():
            return [(int(m.group(1)), int(m.group(2))) for m in (
                DROPPED_RE.search(line) for line in sf.logs()) if m]
        # A 64 KiB pipe read again takes the 21 lines after the stall.
        self.check_stall(sf, sf.pause_stderr, sf.resume_stderr,
                         lambda: None, session_lines, dropped_lines)

    def test_syslog_a_socket_nobody_reads(self):
        d = tempfile.mkdtemp(prefix='sflog-')
        self.addCleanup(shutil.rmtree, d, True)
        log = DatagramLog(os.path.join(d, 'log.sock'))
        self.addCleanup(log.close)
        sf = self.start({'target': 'syslog', 'facility': 'mail',
                         'level': 'info', 'syslog_socket': log.path})
        log.wait_for(r'\bready\b', TIMEOUT)
        log.wait_for(r'health: server pool/b1 is UP', TIMEOUT)
        # Nothing on stderr: every line went to the socket.
        self.assertEqual([l for l in sf.logs() if 'smtpfront[' in l], [])

        def parsed():
            out = []
            for line in log.snapshot():
                m = SYSLOG_RE.match(line)
                self.assertIsNotNone(m, 'not RFC 3164: %r' % line)
                out.append((int(m.group(1)), int(m.group(2)),
                            m.group(3)))
            return out

        def session_lines():
            return [(pid, 0) for pri, pid, msg in parsed()
                    if msg.startswith('session client=')]

        def dropped_lines():
            return [(pid, int(m.group(2))) for pid, m in (
                (pid, DROPPED_RE.search('smtpfront[%d]: %s' % (pid, msg)))
                for _, pid, msg in parsed()) if m]
        self.check_stall(sf, log.pause, log.resume,
                         lambda: log.wait_drained(TIMEOUT), session_lines,
                         dropped_lines)
        for pri, pid, msg in parsed():
            if msg.startswith('session client='):
                self.assertEqual(pri, 22, msg)		# mail.info
            elif msg.startswith('warning: '):
                self.assertEqual(pri, 20, msg)		# mail.warning
        # The syslog daemon restarts: the socket is gone, a new one
        # appears; the next lines reach it.
        mark = len(log.snapshot())
        log.rebind()
        self.source(5)
        log.wait_for(r'smtpfront\[\d+\]: session client=', TIMEOUT,
                     since=mark)


if __name__ == '__main__':
    h.main()
