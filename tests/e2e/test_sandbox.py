# SPDX-License-Identifier: MIT
"""The sandbox (issue 19, SPEC.md "Processes"): every child (workers and
the health process, at start and after a reload) runs under its seccomp
filter with no_new_privs; `sandbox: false` turns it off with a warning; a
forbidden call made in a running worker (gdb makes it execute execve, as
code injected by an exploit would) kills that worker with SIGSYS, the
master logs the call by name, counts it and respawns the worker, and a
session on another worker goes on. Sanitizer builds run without the
sandbox (README "Sandbox"): the checks that need it are skipped there."""

import os
import platform
import re
import shutil
import subprocess
import unittest

import sfharness as h

TIMEOUT = 15
SANITIZED = os.environ.get('SMTPFRONT_SANITIZED') == '1'
GDB = shutil.which('gdb')


def ptrace_forbidden():
    """Yama's ptrace_scope 3: no process may attach, root neither."""
    try:
        with open('/proc/sys/kernel/yama/ptrace_scope') as f:
            return f.read().strip() == '3'
    except OSError:
        return False


def proc_status(pid):
    """The Seccomp and NoNewPrivs fields of /proc/PID/status."""
    fields = {}
    try:
        f = open('/proc/%d/status' % pid)
    except FileNotFoundError:
        return 'gone'
    with f:
        for line in f:
            k, _, v = line.partition(':')
            if k in ('Seccomp', 'NoNewPrivs'):
                fields[k] = v.strip()
    return fields


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            m = re.match(r'socket:\[(\d+)\]',
                         os.readlink('/proc/%d/fd/%s' % (pid, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    return inodes


def tcp_inode(local_port, remote_port):
    """Inode of the 127.0.0.1 TCP socket local_port <- remote_port."""
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            cols = line.split()
            lport = int(cols[1].split(':')[1], 16)
            rport = int(cols[2].split(':')[1], 16)
            if lport == local_port and rport == remote_port:
                return cols[9]
    return None


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
class SandboxTest(h.ControlClient, unittest.TestCase):

    def start(self, **overrides):
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        port = h.free_port()
        cfg = h.make_config_dict(port, [('b1', b.port)],
                                 health={'interval': '1s'}, **overrides)
        sf = h.Smtpfront(cfg)
        self.addCleanup(sf.stop_checked, self)
        sf.wait_ready(TIMEOUT)
        return sf, port

    def workers(self, sf):
        return [w['pid'] for w in self.status(sf)['workers']]

    def assert_sandboxed(self, sf, pids):
        # Workers filter themselves before they say they are ready: at
        # once. The health process says nothing: it may still be starting.
        workers = self.workers(sf)
        for pid in pids:
            if pid in workers:
                self.assertEqual(proc_status(pid),
                                 {'Seccomp': '2', 'NoNewPrivs': '1'},
                                 'worker %d' % pid)
                continue
            # (or an older generation's child that has just exited)
            h.poll_until(lambda: proc_status(pid),
                         lambda v: v in ({'Seccomp': '2', 'NoNewPrivs': '1'},
                                         'gone'),
                         'health process %d sandboxed' % pid, TIMEOUT)

    @unittest.skipIf(SANITIZED, 'sanitizer build: runs without the sandbox')
    def test_every_child_is_sandboxed(self):
        sf, _ = self.start(workers=3)
        kids = sf.children()
        self.assertEqual(len(kids), 4, kids)    # 3 workers, health process
        self.assertEqual(len(set(self.workers(sf)) & set(kids)), 3)
        self.assert_sandboxed(sf, kids)
        self.assertEqual(proc_status(sf.pid)['Seccomp'], '0',
                         'the master keeps its privileges, unfiltered')
        self.assertFalse([l for l in sf.logs() if 'sandbox' in l],
                         'the sandbox on is the quiet default')
        # A new generation (and its new health process) as well.
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_status(sf, lambda s: {w['generation'] for w in
                                        s['workers']} == {2}, 'generation 2')
        sf.wait_log(r'health process of generation 2 started as pid',
                    TIMEOUT)
        kids = sf.children()
        self.assertEqual(len(kids), 4, kids)
        self.assert_sandboxed(sf, kids)

    def test_sandbox_false_warns_and_turns_it_off(self):
        sf, _ = self.start(sandbox=False)
        sf.wait_log(r'warning: sandbox: off \(sandbox: false\)', TIMEOUT)
        for pid in sf.children():
            self.assertEqual(proc_status(pid)['Seccomp'], '0')
        r = subprocess.run([h.SMTPFRONT_BIN, '-t', '-c', sf.config_path],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r'smtpfront\.yaml:\d+:\d+: warning: '
                         r'sandbox: false')

    @unittest.skipUnless(SANITIZED, 'not a sanitizer build')
    def test_sanitizer_build_runs_without_and_says_so(self):
        sf, _ = self.start()
        sf.wait_log(r'sandbox: off: a sanitizer build', TIMEOUT)
        for pid in sf.children():
            self.assertEqual(proc_status(pid)['Seccomp'], '0')

    @unittest.skipIf(SANITIZED, 'sanitizer build: runs without the sandbox')
    @unittest.skipUnless(GDB, 'gdb not installed')
    @unittest.skipUnless(os.geteuid() == 0, 'gdb attaches to a worker '
                         'running as another user: needs root')
    @unittest.skipIf(ptrace_forbidden(), 'kernel.yama.ptrace_scope is 3')
    @unittest.skipUnless(platform.machine() == 'x86_64',
                         'the injected system call is x86-64 code')
    def test_forbidden_call_kills_logs_and_respawns(self):
        sf, port = self.start(workers=2)
        workers = self.workers(sf)
        self.assertEqual(len(workers), 2)
        # A session in flight, then: which worker holds it?
        s = h.smtp_session('127.0.0.1', port, timeout=TIMEOUT)
        self.addCleanup(s.close)
        s.ehlo('sandbox.test')
        self.assertEqual(s.mail('a@sandbox.test')[0], 250)
        self.assertEqual(s.rcpt('b@server.test')[0], 250)
        inode = tcp_inode(port, s.sock.getsockname()[1])
        self.assertIsNotNone(inode)
        holder = [w for w in workers if inode in socket_inodes(w)]
        self.assertEqual(len(holder), 1, 'one worker holds the session')
        victim = [w for w in workers if w != holder[0]][0]
        mark = sf.mark()
        # What injected code would do: execute the execve system call.
        # The worker sits in epoll_wait; gdb points it back at that
        # syscall instruction with execve's number. (gdb's `call` of
        # execve() would do as well where gdb can write the FPU state of
        # the process; gdb 13 on Linux 6.x cannot.)
        r = subprocess.run(
            [GDB, '-p', str(victim), '-batch', '-nx',
             '-ex', 'x/2bx $pc - 2',
             '-ex', 'set $pc = $pc - 2', '-ex', 'set $rax = 59',
             '-ex', 'set $rdi = 0', '-ex', 'set $rsi = 0',
             '-ex', 'set $rdx = 0', '-ex', 'set $orig_rax = -1'],
            capture_output=True, text=True, timeout=60)
        self.assertRegex(r.stdout, r':\s+0x0f\s+0x05',
                         'the worker was not stopped after a syscall '
                         'instruction:\n' + r.stdout + r.stderr)
        m = sf.wait_log(r'sandbox: worker (\d+) \(pid %d\) killed: '
                        r'forbidden system call (\S+)' % victim,
                        TIMEOUT, mark)
        self.assertEqual(m.group(2), 'execve')
        sf.wait_log(r'worker %s \(pid %d\) killed by signal %d; respawning'
                    % (m.group(1), victim, 31), TIMEOUT, mark)
        new = int(sf.wait_log(r'worker %s respawned as pid (\d+)'
                              % m.group(1), TIMEOUT, mark).group(1))
        self.assertNotIn(new, workers)
        self.wait_status(sf, lambda st: sorted(w['pid'] for w in
                                               st['workers'])
                         == sorted([holder[0], new]), 'respawned worker')
        self.assert_sandboxed(sf, [new, holder[0]])
        # The other worker's session goes on.
        code, _ = s.data(b'Subject: sandbox\r\n\r\nstill here\r\n')
        self.assertEqual(code, 250)
        s.quit()
        sf.wait_sessions(1, TIMEOUT, lambda x: x.get('result') == 'ok')
        metrics = self.ctl(sf, 'metrics').stdout
        self.assertRegex(metrics, r'(?m)^smtpfront_sandbox_kills_total 1$')
        self.assertRegex(metrics,
                         r'(?m)^smtpfront_worker_restarts_total 1$')
        # The new worker serves.
        s2 = h.smtp_session('127.0.0.1', port, timeout=TIMEOUT)
        s2.ehlo('sandbox.test')
        s2.sendmail('a@sandbox.test', ['b@server.test'],
                    b'Subject: after\r\n\r\nok\r\n')
        s2.quit()


if __name__ == '__main__':
    h.main()
