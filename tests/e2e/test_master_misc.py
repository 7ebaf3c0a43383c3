# SPDX-License-Identifier: MIT
"""The master's smaller promises (issues 10 and 12): "no worker left"
counts workers, not the health process; children get exactly the
configured group even when the master already runs with it; syslog without
a socket to talk to falls back to stderr and says so; stderr lines carry a
timestamp unless stderr is the journal; --help and --version."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import sfharness as h

TIMEOUT = 15
CTL = h.SMTPFRONTCTL_BIN
STAMP = r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d '


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
class MasterMiscTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sftest-misc-')
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def backend(self):
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        return b

    def config(self, **kw):
        b = self.backend()
        kw.setdefault('health', {'check': 'connect'})
        port = h.free_port()
        return port, h.make_config_dict(port, [('b1', b.port)], **kw)

    def wrapper(self, name, body):
        """A script that execs smtpfront (same pid) after `body`."""
        path = os.path.join(self.tmp, name)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n%s "$@"\n' % body.replace(
                '@BIN@', h.SMTPFRONT_BIN))
        os.chmod(path, 0o755)
        return path

    # ------------------------------------------------------------ workers

    def test_no_worker_left_exits_though_health_runs(self):
        hook = os.path.join(self.tmp, 'worker-start')
        with open(hook, 'w') as f:
            f.write('config\n')
        port, cfg = self.config(workers=2)
        sf = h.Smtpfront(cfg, env=dict(os.environ,
                                       SMTPFRONT_TEST_WORKER_START=hook))
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_log(r'worker \d+ \(pid \d+\) failed on its configuration; '
                    r'not respawning it', TIMEOUT)
        sf.wait_log(r'no worker left running; exiting', TIMEOUT)
        self.assertEqual(sf.proc.wait(TIMEOUT), 1)
        self.assertFalse([l for l in sf.logs() if re.search(r'\bready\b',
                                                            l)])
        # Nobody holds the port: a client is refused, not left hanging.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(('127.0.0.1', port), TIMEOUT).close()

    @unittest.skipUnless(os.geteuid() == 0, 'needs root to switch users')
    def test_children_get_only_the_configured_group(self):
        # The master runs with gid nogroup already and two more groups:
        # the children must not inherit those.
        binary = self.wrapper('sf-groups', 'exec setpriv --regid=nogroup '
                              '--groups=adm,mail @BIN@')
        _, cfg = self.config(workers=2, user='nobody', group='nogroup',
                             log={'level': 'debug'})
        sf = h.Smtpfront(cfg, binary=binary)
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        sf.wait_log(r'health process started', TIMEOUT)

        def groups(pid):
            with open('/proc/%d/status' % pid) as f:
                text = f.read()
            gids = re.search(r'^Gid:\s+(.*)$', text, re.M).group(1).split()
            return set(map(int, gids)), set(map(int, re.search(
                r'^Groups:\s*(.*)$', text, re.M).group(1).split()))
        self.assertEqual(groups(sf.pid), ({65534}, {4, 8}))
        kids = sf.children()
        self.assertEqual(len(kids), 3)
        for pid in kids:
            self.assertEqual(groups(pid), ({65534}, {65534}), pid)

    # ------------------------------------------------------------ logging

    def test_syslog_without_a_socket_falls_back_to_stderr(self):
        binary = None
        if os.path.exists('/dev/log'):
            if os.geteuid() != 0 or not shutil.which('unshare'):
                self.skipTest('/dev/log exists; hiding it needs root')
            empty = os.path.join(self.tmp, 'not-a-socket')
            open(empty, 'w').close()
            binary = self.wrapper(
                'sf-nolog', 'exec unshare --mount --propagation private sh '
                '-c \'mount --bind "$1" /dev/log && shift && exec "$@"\' '
                'sh %s @BIN@' % empty)
        _, cfg = self.config(log={'target': 'syslog', 'facility': 'mail'})
        sf = h.Smtpfront(cfg, binary=binary)
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_log(r'warning: log: target syslog, but /dev/log cannot be '
                    r'reached \(.+\): logging to stderr instead', TIMEOUT)
        sf.wait_ready()
        sf.wait_log(r'health: server pool/b1 is UP', TIMEOUT)
        # Said once, not by every child.
        self.assertEqual(len([l for l in sf.logs()
                              if 'cannot be reached' in l]), 1)
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)

    def run_until_ready(self, env, stderr_w, stderr_r):
        """smtpfront with stderr on a pipe we made; its lines up to
        'ready'."""
        _, cfg = self.config()
        path = os.path.join(self.tmp, 'sf.yaml')
        with open(path, 'w') as f:
            f.write(h.to_yaml(cfg).replace('@DIR@', self.tmp) + '\n')
        p = subprocess.Popen([h.SMTPFRONT_BIN, '-c', path],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=stderr_w,
                             env=env, start_new_session=True)
        os.close(stderr_w)
        lines = []
        with os.fdopen(stderr_r, 'r') as f:
            try:
                deadline = time.monotonic() + TIMEOUT
                for line in f:
                    lines.append(line.rstrip('\n'))
                    if re.search(r'\bready\b', line) or \
                            time.monotonic() > deadline:
                        break
            finally:
                os.killpg(p.pid, 9)
                p.wait(TIMEOUT)
        return lines

    def test_stderr_lines_carry_a_timestamp_unless_journal(self):
        env = dict(os.environ)
        env.pop('JOURNAL_STREAM', None)
        r, w = os.pipe()
        lines = self.run_until_ready(env, w, r)
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r'^' + STAMP + r'smtpfront\[\d+\]: ')
        # The journal stamps lines itself: none of ours then.
        r, w = os.pipe()
        st = os.fstat(w)
        env['JOURNAL_STREAM'] = '%d:%d' % (st.st_dev, st.st_ino)
        lines = self.run_until_ready(env, w, r)
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r'^smtpfront\[\d+\]: ')
        # A JOURNAL_STREAM that is not our stderr (inherited from a
        # parent) does not count.
        r, w = os.pipe()
        env['JOURNAL_STREAM'] = '%d:%d' % (st.st_dev, st.st_ino)
        lines = self.run_until_ready(env, w, r)
        self.assertRegex(lines[0], r'^' + STAMP)

    # ------------------------------------------------------------ cli

    def test_help_and_version(self):
        for args in (['-h'], ['--help']):
            r = subprocess.run([h.SMTPFRONT_BIN] + args, capture_output=True,
                               text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn('usage: smtpfront', r.stdout)
            self.assertIn('-t ', r.stdout)
        for args in (['-V'], ['--version']):
            r = subprocess.run([h.SMTPFRONT_BIN] + args, capture_output=True,
                               text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, args)
            self.assertRegex(r.stdout, r'^smtpfront \d+\.\d+\.\d+\n$')
        if not (CTL and os.access(CTL, os.X_OK)):
            return
        for args in (['-h'], ['--help']):
            r = subprocess.run([CTL] + args, capture_output=True, text=True,
                               timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn('usage: smtpfrontctl', r.stdout)
            self.assertIn('reload', r.stdout)
        for args in (['-V'], ['--version']):
            r = subprocess.run([CTL] + args, capture_output=True, text=True,
                               timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, args)
            self.assertRegex(r.stdout, r'^smtpfrontctl \d+\.\d+\.\d+\n$')
        r = subprocess.run([CTL, '--bogus'], capture_output=True, text=True,
                           timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertIn('usage:', r.stderr)


if __name__ == '__main__':
    h.main()
