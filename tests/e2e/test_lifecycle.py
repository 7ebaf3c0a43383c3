# SPDX-License-Identifier: MIT
"""Process lifecycle and capacity: SIGTERM lets open sessions finish and
gives the backlog the shutdown 421; shutdown_timeout cuts what is left;
max_connections answers 421 4.7.0 across workers; a killed worker is
respawned within a second and only its own sessions are lost."""

import os
import re
import signal
import time
import unittest

import sfharness as h

TIMEOUT = 15


class LifecycleTest(unittest.TestCase):
    def start(self, **cfg):
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        port = h.free_port()
        sf = h.Smtpfront(h.make_config(port, [(b.name, b.port)], **cfg))
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        sf.port = port
        return sf, b

    def client(self, port):
        c = h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        return c

    def workers(self, sf):
        """The worker pids: every child but the health process."""
        m = sf.wait_log(r'smtpfront\[(\d+)\]: (?:warning: )?health: ', 10)
        health = int(m.group(1))
        return [p for p in sf.children() if p != health]

    def status(self, sf):
        import json
        import socket
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(TIMEOUT)
            s.connect(sf.control_socket)
            s.sendall(b'status\n')
            s.shutdown(socket.SHUT_WR)
            data = b''
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data)

    @staticmethod
    def resume(pid):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:      # it finished and exited: fine
            pass

    def test_sigterm_lets_sessions_finish_and_421s_the_backlog(self):
        sf, b = self.start(workers=1, health={'check': 'connect'})
        open_session = self.client(sf.port)
        self.assertEqual(open_session.read_reply().code, 220)
        (worker,) = self.workers(sf)
        # A stopped worker accepts nothing: the next client waits in the
        # listen backlog, where only the master can answer it.
        os.kill(worker, signal.SIGSTOP)
        self.addCleanup(self.resume, worker)
        queued = self.client(sf.port)
        mark = sf.mark()
        os.kill(sf.pid, signal.SIGTERM)
        sf.wait_log(r'received Terminated: stopping', TIMEOUT, since=mark)
        reply = queued.read_reply()
        self.assertEqual(reply.code, 421)
        self.assertEqual(reply.text, '4.3.2 sf.test Service shutting down')
        self.assertEqual(queued.wait_close(TIMEOUT), (b'', 'eof'))
        os.kill(worker, signal.SIGCONT)
        # The session that was open goes on to its end.
        self.assertEqual(open_session.cmd('EHLO me').code, 250)
        self.assertEqual(open_session.cmd('QUIT').code, 221)
        self.assertEqual(open_session.wait_close(TIMEOUT)[1], 'eof')
        open_session.close()
        # (A second SIGTERM would stop at once: wait for the line first.)
        sf.wait_sessions(1, TIMEOUT, pred=lambda s: s['result'] == 'ok')
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)
        self.assertTrue(any(s["result"] == "ok" for s in sf.sessions()),
                        "\n".join(sf.logs()))

    def test_shutdown_timeout_ends_stuck_sessions(self):
        sf, b = self.start(workers=1, shutdown_timeout='1s',
                           health={'check': 'connect'})
        c = self.client(sf.port)
        self.assertEqual(c.read_reply().code, 220)
        os.kill(sf.pid, signal.SIGTERM)
        # The client says nothing more; the worker closes it at 1 s.
        data, how = c.wait_close(TIMEOUT)
        self.assertEqual(how, 'eof')
        # The worker closes the socket, then logs: wait for the line
        # before stop(), whose SIGTERM, a second one, kills at once.
        (s,) = sf.wait_sessions(1, TIMEOUT)
        self.assertEqual(s['result'], 'shutdown', s)
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)
        self.assertEqual(len(sf.sessions()), 1)

    def test_max_connections_across_workers(self):
        sf, b = self.start(workers=2, listener={'max_connections': 3},
                           health={'check': 'connect'})
        held = []
        for _ in range(3):
            c = self.client(sf.port)
            self.assertEqual(c.read_reply().code, 220)
            held.append(c)
        over = self.client(sf.port)
        reply = over.read_reply()
        self.assertEqual(reply.code, 421)
        self.assertEqual(reply.text,
                         '4.7.0 sf.test Too many connections, try again later')
        self.assertEqual(over.wait_close(TIMEOUT), (b'', 'eof'))
        sf.wait_sessions(1, TIMEOUT, pred=lambda s: s['result'] == 'overload')
        # Room again once one session ends.
        self.assertEqual(held[0].cmd('QUIT').code, 221)
        held[0].wait_close(TIMEOUT)
        held[0].close()
        sf.wait_sessions(1, TIMEOUT, pred=lambda s: s['result'] == 'ok')
        # The session line comes before the worker's count drops: wait
        # for the count (shared memory has no event to await).
        h.poll_until(lambda: self.status(sf),
                     lambda d: sum(w['active'] for w in d['workers']) == 2,
                     'the ended session no longer counted', TIMEOUT)
        again = self.client(sf.port)
        self.assertEqual(again.read_reply().code, 220)

    def test_killed_worker_is_respawned(self):
        sf, b = self.start(workers=2, health={'check': 'connect'})
        before = self.workers(sf)
        self.assertEqual(len(before), 2)
        mark = sf.mark()
        os.kill(before[0], signal.SIGKILL)
        sf.wait_log(r'worker \d+ \(pid %d\) killed by signal 9; respawning'
                    % before[0], TIMEOUT, since=mark)
        m = sf.wait_log(r'worker \d+ respawned as pid (\d+)', TIMEOUT,
                        since=mark)
        new = int(m.group(1))
        self.assertIn(new, sf.children())
        self.assertNotIn(before[0], sf.children())
        for _ in range(10):
            c = self.client(sf.port)
            self.assertEqual(c.read_reply().code, 220)
            self.assertEqual(c.cmd('QUIT').code, 221)

    def test_killed_worker_under_load_loses_only_its_sessions(self):
        sf, b = self.start(workers=2, health={'check': 'connect'})
        workers = self.workers(sf)
        # Ten sessions held open mid-transaction, spread over both workers.
        held = []
        for i in range(10):
            c = self.client(sf.port)
            self.assertEqual(c.read_reply().code, 220)
            self.assertEqual(c.cmd('EHLO held%d.test' % i).code, 250)
            self.assertEqual(c.cmd('MAIL FROM:<a@example.org>').code, 250)
            held.append(c)
        # The victim is the worker holding more of them (status counts).
        active = {w['pid']: w['active'] for w in self.status(sf)['workers']}
        victim = max(active, key=active.get)
        self.assertEqual(set(active), set(workers))
        load = h.backend_load(sf.port)
        self.addCleanup(load.stop)
        self.assertTrue(load.wait_ok(50, TIMEOUT))
        mark = sf.mark()
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        m = sf.wait_log(r'worker \d+ respawned as pid (\d+)', TIMEOUT,
                        since=mark)
        self.assertLess(time.monotonic() - killed_at, 1.0)
        self.assertIn(int(m.group(1)), sf.children())
        self.assertTrue(load.wait_ok(100, TIMEOUT))
        self.assertTrue(load.stop())
        # Each load thread had at most one session in the victim.
        self.assertLessEqual(len(load.failures), 4, load.failures)
        lost = ok = 0
        for c in held:
            try:
                r = c.cmd('RCPT TO:<b@example.org>')
            except (ConnectionError, OSError, EOFError, h.HarnessError):
                r = None
            if r is None or r.code != 250:
                lost += 1
                continue
            self.assertEqual(c.cmd('DATA').code, 354)
            self.assertEqual(c.cmd('body\r\n.').code, 250)
            self.assertEqual(c.cmd('QUIT').code, 221)
            ok += 1
        self.assertEqual(lost, active[victim])
        self.assertEqual(ok, 10 - active[victim])

if __name__ == '__main__':
    h.main()
