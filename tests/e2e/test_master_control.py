# SPDX-License-Identifier: MIT
"""The control socket under pressure (issue 10): idle and reconnecting
clients do not lock `smtpfrontctl status` out (the oldest connection that
has not sent its request is closed to make room), one user's flood does not
push out another user's connections (a bound per peer uid), the warning
about it is rate-limited, and running out of descriptors pauses accepting
instead of spinning the master, which recovers once descriptors are back."""

import os
import resource
import socket
import subprocess
import threading
import time
import unittest

import sfharness as h

TIMEOUT = 15
CTL = h.SMTPFRONTCTL_BIN
CROWDED = r'control: crowded'


def cpu_ticks(pid):
    """utime + stime of pid, in clock ticks."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def lowest_free_fd(pid):
    used = {int(fd) for fd in os.listdir('/proc/%d/fd' % pid)}
    fd = 0
    while fd in used:
        fd += 1
    return fd


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class MasterControlTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def start(self, **cfg):
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        cfg.setdefault('health', {'check': 'connect'})
        sf = h.Smtpfront(h.make_config(h.free_port(), [('b1', b.port)],
                                       **cfg))
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        return sf

    def idle(self, path, n):
        """n connections that never send anything (closed at cleanup)."""
        out = []
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:     # the backlog is full: fine
                pass
            except OSError:
                s.close()
                continue
            out.append(s)
        self.addCleanup(lambda: [s.close() for s in out])
        return out

    def crowded_lines(self, sf):
        return [l for l in sf.logs() if 'control: crowded' in l]

    def test_idle_connections_do_not_lock_status_out(self):
        sf = self.start()
        self.idle(sf.control_socket, 200)
        for _ in range(4):
            t0 = time.monotonic()
            doc = self.status(sf)
            self.assertEqual(doc['generation'], 1)
            self.assertLess(time.monotonic() - t0, 2.0)
        sf.wait_log(CROWDED, TIMEOUT)
        # Hundreds of connections closed, a line or two about it.
        self.assertLessEqual(len(self.crowded_lines(sf)), 2)

    def test_reconnect_flood_does_not_lock_status_out(self):
        sf = self.start()
        stop = threading.Event()

        def flood():
            while not stop.is_set():
                for s in self.idle_batch(sf.control_socket, 20):
                    s.close()
        self.idle_batch = lambda path, n: [
            s for s in (self.try_connect(path) for _ in range(n)) if s]
        threads = [threading.Thread(target=flood, daemon=True)
                   for _ in range(4)]
        held = self.idle(sf.control_socket, 64)
        for t in threads:
            t.start()
        self.addCleanup(stop.set)
        failed = []
        for _ in range(30):
            r = self.ctl(sf, 'status', '--json')
            if r.returncode != 0:
                failed.append(r.stderr)
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
        self.assertEqual(failed, [])
        self.assertLessEqual(len(self.crowded_lines(sf)), 3)
        self.assertGreater(len(held), 0)

    @staticmethod
    def try_connect(path):
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            return s
        except OSError:
            s.close()
            return None

    @unittest.skipUnless(os.geteuid() == 0, 'needs root for another uid')
    def test_one_users_flood_leaves_other_users_alone(self):
        sf = self.start(control={'mode': '0666'})
        os.chmod(sf.dir, 0o755)
        mine = self.idle(sf.control_socket, 5)
        # nobody opens 100 connections and holds them a while.
        code = ('import socket, sys, time\n'
                'ss = []\n'
                'for _ in range(100):\n'
                '    s = socket.socket(socket.AF_UNIX)\n'
                '    s.setblocking(False)\n'
                '    try:\n'
                '        s.connect(sys.argv[1])\n'
                '    except BlockingIOError:\n'
                '        pass\n'
                '    ss.append(s)\n'
                'print("done", flush=True)\n'
                'time.sleep(30)\n')
        p = subprocess.Popen(['setpriv', '--reuid=nobody', '--regid=nogroup',
                              '--clear-groups', 'python3', '-c', code,
                              sf.control_socket], stdout=subprocess.PIPE,
                             text=True)

        def reap():
            p.kill()
            p.wait()
            p.stdout.close()
        self.addCleanup(reap)
        self.assertEqual(p.stdout.readline(), 'done\n')
        sf.wait_log(CROWDED, TIMEOUT)
        # Root's idle connections are still open (no EOF yet): only
        # nobody's own were closed to make room for nobody.
        for s in mine:
            s.setblocking(True)
            s.settimeout(0.2)
            with self.assertRaises(socket.timeout):
                s.recv(1)
        self.assertEqual(self.status(sf)['generation'], 1)

    def test_out_of_descriptors_pauses_accepting(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, 4096)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE,
                            (soft, hard))
        sf = self.start()
        with open('/proc/%d/limits' % sf.pid) as f:
            line = [l for l in f if l.startswith('Max open files')][0]
        master_hard = line.split()[4]
        # Not one more descriptor for the master: every accept fails.
        low = lowest_free_fd(sf.pid)
        subprocess.run(['prlimit', '--pid', str(sf.pid),
                        '--nofile=%d:%s' % (low, master_hard)], check=True)
        mark = sf.mark()
        conns = self.idle(sf.control_socket, 1000)
        self.assertGreater(len(conns), 0)
        sf.wait_log(r'control: crowded.*accepting paused', TIMEOUT,
                    since=mark)
        t0, c0 = time.monotonic(), cpu_ticks(sf.pid)
        time.sleep(2.0)         # measuring: the CPU used over a while
        used = (cpu_ticks(sf.pid) - c0) / os.sysconf('SC_CLK_TCK')
        self.assertLess(used / (time.monotonic() - t0), 0.05)
        # Descriptors back: it recovers and answers.
        subprocess.run(['prlimit', '--pid', str(sf.pid),
                        '--nofile=%s:%s' % (master_hard, master_hard)],
                       check=True)
        for s in conns:
            s.close()
        doc = h.poll_until(lambda: self.ctl(sf, 'status', '--json'),
                           lambda r: r.returncode == 0,
                           'status answered again', TIMEOUT)
        self.assertIn('"generation":1', doc.stdout)


if __name__ == '__main__':
    h.main()
