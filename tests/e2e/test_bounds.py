# SPDX-License-Identifier: MIT
"""Memory bounded per session (issue 16, SPEC.md "Bounds"): 50 clients each
pipeline 1 MB of NOOPs and never read a byte. The replies pile up toward
them; what smtpfront holds for such a client must stay small: at most
64 KiB of worker memory (RSS growth of the worker, divided by the clients)
and a client-socket send buffer (the `tb` of `ss -tm`'s skmem) of at most
128 KiB. Run against the test backend (BackendBounds) and against a real
Postfix (PostfixBounds: needs root, the 'postfix' suite). Each prints what
it measured before asserting.

No sleeps stand in for events: the clients write until every one has
written all or cannot write, and the measurement waits (bounded) until
nothing moves any more: the worker's RSS, every queue of smtpfront's
sockets and what the clients wrote all unchanged over a second."""

import os
import re
import select
import socket
import subprocess
import sys
import time
import unittest

import sfharness as h
from postfixlab import PostfixLab, logs_on_failure, postfix_available

CLIENTS = 50
PIPELINE_BYTES = 1 << 20
# Bounds from the issue.
RSS_PER_CLIENT_MAX_KIB = 64
SNDBUF_MAX = 128 * 1024
# A sanitizer build holds more per byte queued (redzones, its allocator):
# 1.25x measured with 4 MiB per client and the quarantine off (below).
SANITIZED = os.environ.get('SMTPFRONT_SANITIZED') == '1'
RSS_BOUND_KIB = RSS_PER_CLIENT_MAX_KIB * (1.5 if SANITIZED else 1)
# Settling: sampled every SAMPLE_S; still when STILL_SAMPLES in a row are
# the same; SETTLE_S bounds the whole wait.
SAMPLE_S = 0.1
STILL_SAMPLES = 10
SETTLE_S = 90
TIMEOUT = 30


def client_source(i):
    """A client address of its own per client: nothing per-client (in
    smtpfront or in Postfix's anvil) limits them, like a botnet."""
    return '127.0.3.%d' % (i + 1)


_SKMEM_RE = re.compile(r'skmem:\(([^)]*)\)')
_SKMEM_ITEM_RE = re.compile(r'([a-z]+)(\d+)$')


def ss_sockets(*filt):
    """Established TCP sockets matching the ss filter: dicts with recvq,
    sendq, local, peer and the skmem fields (r, rb, t, tb, ...)."""
    out = subprocess.run(['ss', '-tmnH', 'state', 'established'] +
                         list(filt), capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    socks = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0].isdigit() and f[1].isdigit():
            socks.append({'recvq': int(f[0]), 'sendq': int(f[1]),
                          'local': f[2], 'peer': f[3]})
        m = _SKMEM_RE.search(line)      # on its own line or the same one
        if m and socks:
            for item in m.group(1).split(','):
                k = _SKMEM_ITEM_RE.match(item)
                if k:
                    socks[-1][k.group(1)] = int(k.group(2))
    return socks


class Pipeliner:
    """One client: EHLO, then NOOPs, 1 MB in all, written as fast as its
    socket takes them; it never reads."""
    payload = b'EHLO bounds.test\r\n' + b'NOOP\r\n' * (
        (PIPELINE_BYTES - 18) // 6)

    def __init__(self, port, source):
        self.sock = socket.create_connection(('127.0.0.1', port),
                                             timeout=TIMEOUT,
                                             source_address=(source, 0))
        self.sock.setblocking(False)
        self.local = '%s:%d' % self.sock.getsockname()[:2]
        self.sent = 0
        self.view = memoryview(self.payload)

    @property
    def done(self):
        return self.sent >= len(self.payload)

    def push(self):
        try:
            self.sent += self.sock.send(self.view[self.sent:self.sent +
                                                  65536])
        except BlockingIOError:
            pass

    def close(self):
        self.sock.close()


class BoundsMixin:
    """The measurement, for any backend behind smtpfront."""

    def config(self, port, server):
        return h.make_config_dict(
            port, [('b1', server)], workers=1,
            listener={'client_timeout': '10m', 'max_connections': 1000},
            # 50 Postfix smtpd processes starting on a busy machine may
            # take more than the usual 5 s to greet: not what is measured.
            pool={'server_timeout': '10m', 'greeting_timeout': '60s'},
            health={'check': 'connect', 'interval': '30s'})

    @staticmethod
    def smtpfront_env():
        """The environment for smtpfront: in a sanitizer build without
        AddressSanitizer's quarantine, which keeps up to 256 MB of freed
        memory resident: memory no session holds, that would count as
        the sessions' RSS."""
        if not SANITIZED:
            return None
        env = dict(os.environ)
        opts = [o for o in env.get('ASAN_OPTIONS', '').split(':') if o]
        opts += ['quarantine_size_mb=0', 'thread_local_quarantine_size_kb=0']
        env['ASAN_OPTIONS'] = ':'.join(opts)
        return env

    def start_smtpfront(self, server):
        port = h.free_port()
        sf = h.Smtpfront(self.config(port, server), env=self.smtpfront_env())
        sf.port = port
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        # Until its first verdict the health process may still hold the
        # listening socket it inherited; after it, only the worker does.
        sf.wait_log(r'health: server \S+ is UP', TIMEOUT)
        workers = [p for p in sf.children() if h.listens(p, port)]
        self.assertEqual(len(workers), 1, 'one worker: %r' % workers)
        return sf, workers[0]

    def warm_up(self, port):
        """One short pipelining session read to its end, so that the code
        paths the measurement runs are paged in before the baseline."""
        c = h.RawSMTP('127.0.0.1', port, source=client_source(0),
                      timeout=TIMEOUT)
        try:
            self.assertEqual(c.read_reply().code, 220)
            c.send('EHLO warm.test\r\n' + 'NOOP\r\n' * 100)
            self.assertEqual(c.read_reply().code, 250)
            for _ in range(100):
                self.assertEqual(c.read_reply().code, 250)
            self.assertEqual(c.cmd('QUIT').code, 221)
        finally:
            c.close()

    def sample(self, worker, port, backend_port, clients):
        """What may still move: the worker's RSS, the queues of every
        socket smtpfront holds toward the clients and toward the backend,
        what waits at the clients, and what the clients wrote."""
        front = ss_sockets('(', 'sport', '=', ':%d' % port, ')')
        back = ss_sockets('(', 'dport', '=', ':%d' % backend_port, ')')
        at_clients = ss_sockets('(', 'dport', '=', ':%d' % port, ')')
        return {
            'rss': h.rss_kb(worker),
            'front': sorted((s['peer'], s['recvq'], s['sendq'],
                             s.get('tb')) for s in front),
            'back': sorted((s['local'], s['recvq'], s['sendq'])
                           for s in back),
            'clients': sorted((s['local'], s['recvq'], s['sendq'])
                              for s in at_clients),
            'sent': [c.sent for c in clients],
        }

    def settle(self, worker, port, backend_port, clients):
        """Write until no client can write more, replies reached every
        client (each session is through to the backend: a session still
        waiting for its greeting moves nothing either) and nothing has
        moved for STILL_SAMPLES samples in a row; the last sample."""
        deadline = time.monotonic() + SETTLE_S
        last, still, next_sample = None, 0, 0.0
        while True:
            pending = [c for c in clients if not c.done]
            now = time.monotonic()
            wait = max(0.0, next_sample - now)
            if pending:
                _, ready, _ = select.select([], [c.sock for c in pending],
                                            [], wait)
                ready = set(ready)
                for c in pending:
                    if c.sock in ready:
                        c.push()
            elif wait:
                time.sleep(wait)        # the sampling period, nothing else
            if time.monotonic() < next_sample:
                continue
            next_sample = time.monotonic() + SAMPLE_S
            cur = self.sample(worker, port, backend_port, clients)
            through = len(cur['clients']) == len(clients) and all(
                q > 0 for _, q, _ in cur['clients'])
            still = still + 1 if cur == last and through else 0
            last = cur
            if still >= STILL_SAMPLES:
                return cur
            if time.monotonic() > deadline:
                self.fail('still moving after %ss: RSS %d KiB, sent %d of '
                          '%d bytes' % (SETTLE_S, cur['rss'],
                                        sum(cur['sent']),
                                        CLIENTS * PIPELINE_BYTES))

    def measure(self, what, sf, worker, backend_port):
        self.warm_up(sf.port)
        rss0 = h.rss_kb(worker)
        clients = []
        self.addCleanup(lambda: [c.close() for c in clients])
        for i in range(CLIENTS):
            clients.append(Pipeliner(sf.port, client_source(i)))
        st = self.settle(worker, sf.port, backend_port, clients)
        front = ss_sockets('(', 'sport', '=', ':%d' % sf.port, ')')
        at_clients = ss_sockets('(', 'dport', '=', ':%d' % sf.port, ')')
        growth = st['rss'] - rss0
        per_client = growth / CLIENTS
        tb_max = max((s.get('tb', 0) for s in front), default=0)
        sendq_max = max((s['sendq'] for s in front), default=0)
        waiting = [s['recvq'] for s in at_clients]
        print('bounds[%s]: %d clients pipelining NOOPs, never reading; '
              'each wrote %d..%d of %d bytes; replies waiting at the '
              'clients %d..%d bytes' % (
                  what, CLIENTS, min(st['sent']), max(st['sent']),
                  PIPELINE_BYTES, min(waiting, default=0),
                  max(waiting, default=0)), flush=True)
        print('bounds[%s]: worker RSS %d -> %d KiB: +%d KiB, %.1f KiB per '
              'client (bound %g%s)' % (
                  what, rss0, st['rss'], growth, per_client, RSS_BOUND_KIB,
                  ', sanitizer build' if SANITIZED else ''), flush=True)
        print('bounds[%s]: client sockets of smtpfront: largest send '
              'buffer tb%d (bound %d), largest Send-Q %d' % (
                  what, tb_max, SNDBUF_MAX, sendq_max), flush=True)
        # The measurement means something only while every session is
        # held and the replies did flow toward the clients.
        self.assertEqual(len(front), CLIENTS,
                         'smtpfront holds every client')
        self.assertEqual(len(at_clients), CLIENTS,
                         'every client is still connected')
        self.assertTrue(all(w > 0 for w in waiting),
                        'replies reached every client: %r' % waiting)
        self.assertTrue(all(s > 0 for s in st['sent']))
        problems = []
        if per_client > RSS_BOUND_KIB:
            problems.append('worker RSS grew %.1f KiB per client (> %g)' %
                            (per_client, RSS_BOUND_KIB))
        if tb_max > SNDBUF_MAX:
            problems.append('a client socket send buffer is tb%d (> %d)'
                            % (tb_max, SNDBUF_MAX))
        if problems:
            self.fail('; '.join(problems))


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
class BackendBounds(BoundsMixin, unittest.TestCase):

    def test_pipeliners_test_backend(self):
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        sf, worker = self.start_smtpfront(b.port)
        self.measure('test backend', sf, worker, b.port)


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipIf(postfix_available() is not None, postfix_available() or '')
class PostfixBounds(BoundsMixin, unittest.TestCase):

    def test_pipeliners_postfix(self):
        # Every client is allowlisted in postscreen (no greet wait, handed
        # to smtpd at once). NOOP is a junk command: past
        # smtpd_junk_command_limit Postfix slows the client down and hangs
        # up, which would end the test before anything piles up; a Postfix
        # that answers every NOOP at once is the worst case for the front.
        lab = PostfixLab(h.free_port(), proxy='haproxy',
                         access_list=['127.0.0.0/8'],
                         extra_main={'smtpd_junk_command_limit': '100000000'})
        self.enterContext(lab)
        sf = None

        def fronts():
            return [('', sf)] if sf is not None else []
        with logs_on_failure(fronts, lambda: [('', lab)]):
            sf, worker = self.start_smtpfront(lab.hostport)
            self.measure('postfix', sf, worker, lab.port)


if __name__ == '__main__':
    h.main()
