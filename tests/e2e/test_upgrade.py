# SPDX-License-Identifier: MIT
"""Restarts that keep the listeners and binary upgrades in place (issue 17).

- systemd's handover, emulated: smtpfront started with LISTEN_FDS,
  LISTEN_FDNAMES and LISTEN_PID naming sockets the test bound and listened
  on. A connection already waiting in the backlog is served; the bind the
  config has but the handover lacks is bound; a handed socket no bind wants
  is closed (its port refuses afterwards); FDSTORE=1 messages with the
  names come back on NOTIFY_SOCKET with the listening sockets attached.
"""

import array
import os
import socket
import tempfile
import shutil
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
        got = {}
        while len(got) < 2:
            msg, fds = recv_fds(notify)
            lines = msg.split('\n')
            for fd in fds:
                f = socket.socket(fileno=fd)
                if 'FDSTORE=1' in lines:
                    name = [l for l in lines if l.startswith('FDNAME=')]
                    got[name[0][len('FDNAME='):]] = f.getsockname()[1]
                f.close()
        self.assertEqual(got, {'[127.0.0.1]_%d' % p1: p1,
                               '[127.0.0.1]_%d' % p2: p2})
        sf.stop_checked(self)


if __name__ == '__main__':
    unittest.main()
