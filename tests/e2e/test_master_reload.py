# SPDX-License-Identifier: MIT
"""Ready-checked reloads (issue 10): a reload is answered only once every
new worker said it is accepting; new workers that exit at start, or never
say so, fail the reload while the old generation keeps serving a running
load; a second reload meanwhile is refused; the generation number of a
failed reload is not used up.

Workers are made to misbehave with the test-only hook of child_ready():
$SMTPFRONT_TEST_WORKER_START names a file whose word ("exit", "stall")
decides how a worker starting while it exists behaves."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import sfharness as h

TIMEOUT = 30
CTL = h.SMTPFRONTCTL_BIN


def tcp_listen_inodes(port):
    """Socket inodes of TCP sockets listening on port (IPv4 and IPv6).
    ss filters in the kernel; /proc/net/tcp under load is mostly
    TIME_WAIT and slow to read."""
    out = subprocess.run(['ss', '-Hltne', 'sport = :%d' % port],
                         capture_output=True, text=True, check=True).stdout
    return {int(m) for m in re.findall(r'\bino:(\d+)', out)}


def epoll_watches(pid, inodes):
    """Does one of pid's epoll sets watch a socket in inodes?"""
    fds = {}
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            fds[int(fd)] = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            pass
    for fd, target in fds.items():
        if target != 'anon_inode:[eventpoll]':
            continue
        with open('/proc/%d/fdinfo/%d' % (pid, fd)) as f:
            for line in f:
                m = re.match(r'tfd:\s+(\d+)', line)
                if not m:
                    continue
                t = fds.get(int(m.group(1)), '')
                m = re.match(r'socket:\[(\d+)\]', t)
                if m and int(m.group(1)) in inodes:
                    return True
    return False


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class MasterReloadTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sftest-hook-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.hook = os.path.join(self.tmp, 'worker-start')

    def set_hook(self, word):
        if word is None:
            os.unlink(self.hook)
            return
        with open(self.hook, 'w') as f:
            f.write(word + '\n')

    def backend(self, name):
        b = h.Backend(mode='normal', proxy='v2', name=name)
        self.addCleanup(b.stop)
        return b

    def start(self, cfg):
        sf = h.Smtpfront(cfg, env=dict(os.environ,
                                       SMTPFRONT_TEST_WORKER_START=self.hook))
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        return sf

    def config(self, port, servers, **kw):
        kw.setdefault('health', {'check': 'connect', 'interval': '500ms'})
        return h.make_config_dict(port, servers, **kw)

    def load(self, port):
        # As h.backend_load(), with ports enough for a minute of load.
        load = h.MailLoad(port, ['127.0.0.%d' % (50 + i) for i in range(4)],
                          'Subject: load\r\n\r\nbody\r\n', 'b@example.org',
                          port_base=10000, port_span=12000)
        load.start()
        self.addCleanup(load.stop)
        self.assertTrue(load.wait_ok(20, TIMEOUT))
        return load

    def finish_load(self, sf, load):
        self.assertTrue(load.stop())
        self.assertEqual(load.failures, [])
        self.assertGreater(load.ok, 0)
        bad = [s for s in sf.sessions() if s.get('result') != 'ok']
        self.assertEqual(bad, [], 'a session failed')

    def workers_of(self, doc, gen, draining=False):
        return {w['pid'] for w in doc['workers']
                if w['generation'] == gen and w['draining'] == draining}

    # ------------------------------------------------------------ exit

    def test_new_workers_that_exit_fail_the_reload_under_load(self):
        b1 = self.backend('b1')
        port = h.free_port()
        cfg = self.config(port, [('b1', b1.port)])
        sf = self.start(cfg)
        load = self.load(port)
        old = self.workers_of(self.status(sf), 1)
        self.assertEqual(len(old), 2)

        self.set_hook('exit')
        cfg['pools']['pool']['servers'][0]['weight'] = 3
        sf.write_config(cfg)
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn('reload failed; generation 1 keeps running', r.stderr)
        self.assertRegex(r.stderr, r'worker \d+ \(pid \d+\) of generation 2 '
                         r'exited with status 1 before it was accepting')
        sf.wait_log(r'reload failed: generation 1 keeps running')
        doc = self.status(sf)
        self.assertEqual(doc['generation'], 1)
        self.assertEqual(self.workers_of(doc, 1), old)
        self.assertEqual(doc['pools'][0]['servers'][0]['weight'], 1)
        # The new workers that did start are stopped, none left over.
        self.wait_status(sf, lambda d: {w['pid'] for w in d['workers']} ==
                         old, 'only the old workers left')
        self.assertTrue(load.wait_ok(20, TIMEOUT))

        # SIGHUP takes the same path.
        mark = sf.mark()
        os.kill(sf.pid, signal.SIGHUP)
        sf.wait_log(r'reload failed: generation 1 keeps running', TIMEOUT,
                    since=mark)
        self.assertEqual(self.status(sf)['generation'], 1)

        # Once workers can start, the next reload is generation 2: a
        # failed one uses no number up.
        self.set_hook(None)
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, 'ok: generation 2\n')
        doc = self.status(sf)
        self.assertEqual(doc['pools'][0]['servers'][0]['weight'], 3)
        self.assertEqual(len(self.workers_of(doc, 2)), 2)
        self.assertTrue(load.wait_ok(20, TIMEOUT))
        self.finish_load(sf, load)

    # ------------------------------------------------------------ stall

    def test_workers_that_never_say_ready_fail_after_the_bound(self):
        b1 = self.backend('b1')
        port = h.free_port()
        cfg = self.config(port, [('b1', b1.port)])
        sf = self.start(cfg)
        load = self.load(port)
        old = self.workers_of(self.status(sf), 1)

        self.set_hook('stall')
        sf.write_config(cfg)
        t0 = time.monotonic()
        first = subprocess.Popen([CTL, '-s', sf.control_socket, 'reload'],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        self.addCleanup(first.kill)
        sf.wait_log(r'reload: generation 2: starting 2 worker')
        # Meanwhile: status answers, another reload is refused, and so is
        # a SIGHUP.
        doc = self.status(sf)
        self.assertEqual(doc['generation'], 1)
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 1)
        self.assertIn('a reload is already in progress (generation 2 is '
                      'starting)', r.stderr)
        mark = sf.mark()
        os.kill(sf.pid, signal.SIGHUP)
        sf.wait_log(r'SIGHUP: a reload is already in progress', TIMEOUT,
                    since=mark)
        self.assertIsNone(first.poll())

        out, err = first.communicate(timeout=TIMEOUT)
        took = time.monotonic() - t0
        self.assertEqual(first.returncode, 1, out)
        self.assertIn('no new worker said it is accepting for 10 s (0 of 2 '
                      'did)', err)
        self.assertGreater(took, 9.5)
        self.assertLess(took, 20)
        doc = self.status(sf)
        self.assertEqual(doc['generation'], 1)
        self.assertEqual(self.workers_of(doc, 1), old)
        # The stalled workers may have served sessions: they finish them,
        # then exit.
        self.wait_status(sf, lambda d: {w['pid'] for w in d['workers']} ==
                         old, 'stalled workers gone')
        self.assertTrue(load.wait_ok(20, TIMEOUT))
        self.finish_load(sf, load)

    # ------------------------------------------------------------ load

    def test_twenty_reloads_with_four_workers_answer_after_accepting(self):
        b1, b2 = self.backend('b1'), self.backend('b2')
        port = h.free_port()
        cfg_a = self.config(port, [('b1', b1.port), ('b2', b2.port)],
                            workers=4, log={'level': 'debug'})
        cfg_b = self.config(port, [('b1', b1.port, {'weight': 2}),
                                   ('b2', b2.port)],
                            workers=4, log={'level': 'debug'})
        sf = self.start(cfg_a)
        load = self.load(port)
        for i in range(20):
            gen = i + 2
            sf.write_config(cfg_b if i % 2 == 0 else cfg_a)
            mark = sf.mark()
            r = self.ctl(sf, 'reload')
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, 'ok: generation %d\n' % gen)
            # Right after the answer: each new worker watches the
            # listening socket (a short grace for an event loop that
            # applies its epoll changes at its first wait).
            new = self.workers_of(self.status(sf), gen)
            self.assertEqual(len(new), 4, new)
            inodes = tcp_listen_inodes(port)
            self.assertTrue(inodes)
            for pid in new:
                h.poll_until(lambda: epoll_watches(pid, inodes),
                             lambda ok: ok, 'worker %d watches the listener'
                             % pid, timeout=1, interval=0.01)
            # And the master said "running" only after every new worker
            # had said it was accepting.
            running = sf.wait_log(r'reload: generation %d running' % gen,
                                  since=mark)
            logs = sf.logs()[mark:]
            at = next(n for n, l in enumerate(logs)
                      if running.re.search(l))
            said = {int(m.group(1)) for m in (
                re.search(r'worker \d+ \(pid (\d+), generation %d\) is '
                          r'accepting' % gen, l) for l in logs[:at]) if m}
            self.assertEqual(said, new)
            self.assertTrue(load.wait_ok(10, TIMEOUT))
        self.finish_load(sf, load)
        self.assertTrue(all(r['banner'] and r['replies'][0] == 220
                            for r in load.records))


if __name__ == '__main__':
    h.main()
