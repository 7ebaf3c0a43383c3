# SPDX-License-Identifier: MIT
"""Host names at reload never block the master (issue 10): smtpfront runs
in a private mount namespace whose /etc/resolv.conf points at a local UDP
socket that swallows every query, and whose /etc/hosts knows one test name.
During a reload whose name never resolves, `status` answers within 100 ms;
the reload then fails with the name's line and column. Names that resolve
(through /etc/hosts, as getaddrinfo does at start) work for servers and
bind addresses, and a bind address that a name turns into a duplicate is
an error at its line."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import sfharness as h

TIMEOUT = 30
CTL = h.SMTPFRONTCTL_BIN
NEVER = 'mx.never.sftest.test'
KNOWN = 'backend.sftest.test'


class DroppingResolver:
    """UDP port 53 on a loopback address: reads queries, answers none."""

    def __init__(self):
        self.sock = None
        for last in range(153, 254):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(('127.0.0.%d' % last, 53))
            except OSError:
                s.close()
                continue
            self.sock, self.addr = s, '127.0.0.%d' % last
            break
        if self.sock is None:
            raise unittest.SkipTest('no free loopback address for port 53')
        self.sock.settimeout(0.2)
        self.queries = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except socket.timeout:
                pass
            except OSError:
                return

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def position(text, needle):
    """(line, column), 1-based, of the first occurrence of needle."""
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n, line.index(needle) + 1
    raise AssertionError('%r not in the config' % needle)


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(os.geteuid() == 0, 'needs root (mount namespace, '
                     'port 53)')
@unittest.skipUnless(shutil.which('unshare'), 'needs unshare(1)')
@unittest.skipUnless(CTL and os.access(CTL, os.X_OK),
                     'smtpfrontctl not built (SMTPFRONTCTL_BIN)')
class MasterDnsTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    def setUp(self):
        self.dns = DroppingResolver()
        self.addCleanup(self.dns.close)
        self.tmp = tempfile.mkdtemp(prefix='sftest-dns-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        resolv = os.path.join(self.tmp, 'resolv.conf')
        with open(resolv, 'w') as f:
            # A long timeout: only smtpfront's own bound ends the wait.
            f.write('nameserver %s\noptions timeout:30 attempts:1\n'
                    % self.dns.addr)
        hosts = os.path.join(self.tmp, 'hosts')
        with open('/etc/hosts') as f:
            base = f.read()
        with open(hosts, 'w') as f:
            f.write(base + '\n127.0.0.1 %s\n' % KNOWN)
        # The same pid all the way: unshare and sh exec, never fork.
        self.wrapper = os.path.join(self.tmp, 'smtpfront-ns')
        with open(self.wrapper, 'w') as f:
            f.write('#!/bin/sh\n'
                    'exec unshare --mount --propagation private sh -c '
                    '\'mount --bind "$1" /etc/resolv.conf && '
                    'mount --bind "$2" /etc/hosts && shift 2 && '
                    'exec "$@"\' sh %s %s %s "$@"\n'
                    % (resolv, hosts, h.SMTPFRONT_BIN))
        os.chmod(self.wrapper, 0o755)

    def start(self, cfg):
        sf = h.Smtpfront(cfg, binary=self.wrapper)
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        return sf

    def backend(self):
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        return b

    def timed_status(self, sf):
        """Seconds a raw `status` request takes, and its answer."""
        t0 = time.monotonic()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(TIMEOUT)
            s.connect(sf.control_socket)
            s.sendall(b'status\n')
            data = b''
            while chunk := s.recv(65536):
                data += chunk
        return time.monotonic() - t0, data

    def test_status_answers_while_a_name_never_resolves(self):
        b = self.backend()
        port = h.free_port()
        cfg = h.make_config_dict(port, [('b1', b.port)],
                                 health={'check': 'connect'})
        sf = self.start(cfg)
        cfg['pools']['pool']['servers'].append(
            {'name': 'far', 'address': '%s:25' % NEVER})
        sf.write_config(cfg)
        line, col = position(sf.config_text, '"%s:25"' % NEVER)
        reload = subprocess.Popen([CTL, '-s', sf.control_socket, 'reload'],
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.addCleanup(reload.kill)
        sf.wait_log(r'reload: resolving 1 host name')
        slowest = 0
        for _ in range(20):
            took, data = self.timed_status(sf)
            self.assertIn(b'"generation":1', data)
            slowest = max(slowest, took)
            time.sleep(0.1)     # spread over the first two seconds
        self.assertLess(slowest, 0.1)
        self.assertIsNone(reload.poll(), 'the reload ended early')
        out, err = reload.communicate(timeout=TIMEOUT)
        self.assertEqual(reload.returncode, 1, out)
        self.assertIn('%s:%d:%d: cannot resolve host "%s": no answer '
                      'within 5 s' % (sf.config_path, line, col, NEVER), err)
        self.assertGreater(self.dns.queries, 0)   # asked, not /etc/hosts
        self.assertEqual(self.status(sf)['generation'], 1)
        with h.RawSMTP('127.0.0.1', port) as c:
            self.assertEqual(c.read_reply().code, 220)

    def test_names_that_resolve_for_servers_and_binds(self):
        b = self.backend()
        port, extra = h.free_port(), h.free_port()
        cfg = h.make_config_dict(port, [('b1', b.port)],
                                 health={'check': 'connect'})
        sf = self.start(cfg)
        cfg['pools']['pool']['servers'] = [
            {'name': 'b1', 'address': '%s:%d' % (KNOWN, b.port)}]
        cfg['listeners'].append({'name': 'extra', 'pool': 'pool',
                                 'bind': ['%s:%d' % (KNOWN, extra)]})
        sf.write_config(cfg)
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, 'ok: generation 2\n')
        (srv,) = self.status(sf)['pools'][0]['servers']
        self.assertEqual(srv['address'], '[127.0.0.1]:%d' % b.port)
        with h.RawSMTP('127.0.0.1', extra) as c:
            self.assertEqual(c.read_reply().code, 220)
        # A name that lands on an address another listener binds.
        cfg['listeners'][1]['bind'] = ['%s:%d' % (KNOWN, port)]
        sf.write_config(cfg)
        line, col = position(sf.config_text, '"%s:%d"' % (KNOWN, port))
        r = self.ctl(sf, 'reload')
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn('%s:%d:%d: duplicate bind address [127.0.0.1]:%d '
                      '(also in listener "smtp")' % (sf.config_path, line,
                                                     col, port), r.stderr)
        self.assertEqual(self.status(sf)['generation'], 2)
        self.assertEqual(self.dns.queries, 0)


if __name__ == '__main__':
    h.main()
