# SPDX-License-Identifier: MIT
"""Abuse-test helpers (stdlib only): a crowd of thousands of SMTP clients
on one selector (connect, read the first reply line, hold, trickle bytes,
hang up), a scripted Python backend for exact endings (it reads the PROXY
header, then runs the test's dialogue on a thread), and process figures
(RSS, CPU seconds, descriptors) read from /proc."""

import errno
import os
import resource
import selectors
import socket
import struct
import threading
import time


def raise_nofile():
    """Let this test process hold as many sockets as the hard limit allows
    (children inherit it: the test backend holds one socket per session)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def nofile_preexec(soft, hard=None):
    """preexec_fn for a child started with RLIMIT_NOFILE soft[/hard]."""
    def apply():
        _, h = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (soft, h if hard is None else hard))
    return apply


# ------------------------------------------------------------ /proc

def _status(pid, key):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return _status(pid, 'VmRSS')


def peak_rss_kb(pid):
    return _status(pid, 'VmHWM')


def cpu_s(pid):
    """user + system CPU seconds of a process."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def nfds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def nofile_limit(pid):
    with open('/proc/%d/limits' % pid) as f:
        for line in f:
            if line.startswith('Max open files'):
                return int(line.split()[3])
    return 0


# ------------------------------------------------------------ the crowd

class Client:
    __slots__ = ('sock', 'src', 'state', 'buf', 'first', 'lines', 't_open',
                 't_first', 't_end', 'end', 'next_send', 'trickle', 'fd')

    def __init__(self, sock, src):
        self.sock = sock
        self.fd = sock.fileno()
        self.src = src
        self.state = 'connecting'
        self.buf = b''
        self.first = None        # first reply line
        self.lines = []          # every line read
        self.t_open = time.monotonic()
        self.t_first = None
        self.t_end = None
        self.end = None          # 'eof' | 'reset' | 'closed' (by us)
        self.next_send = None
        self.trickle = None      # (bytes, period): one byte each period


class Crowd:
    """Many clients on one selector. open() connects them in batches (so
    the listen backlog is not the test), run() reads lines and trickles
    bytes until a predicate holds. Every client records its first line,
    when it came, and how the connection ended."""

    def __init__(self, port, host='127.0.0.1'):
        self.port = port
        self.host = host
        self.sel = selectors.DefaultSelector()
        self.clients = []

    def open(self, n, sources=('127.0.0.1',), batch=500, wait_first=True,
             timeout=60):
        """Connect n clients round-robin over the source addresses; with
        wait_first, return once each has its first line or ended."""
        new = []
        for i in range(n):
            src = sources[i % len(sources)]
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((src, 0))
            try:
                s.connect((self.host, self.port))
            except BlockingIOError:
                pass
            c = Client(s, src)
            self.clients.append(c)
            new.append(c)
            self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE,
                              c)
            if len(new) % batch == 0 and wait_first:
                self.run(lambda: all(x.first is not None or x.end
                                     for x in new[-batch:]), timeout)
        if wait_first:
            self.run(lambda: all(x.first is not None or x.end for x in new),
                     timeout)
        return new

    def _finish(self, c, how):
        if c.end is None:
            c.end = how
            c.t_end = time.monotonic()
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def _on_event(self, c, mask):
        if c.state == 'connecting' and mask & selectors.EVENT_WRITE:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._finish(c, 'reset' if err == errno.ECONNRESET
                             else 'refused')
                return
            c.state = 'open'
            self.sel.modify(c.sock, selectors.EVENT_READ, c)
        if mask & selectors.EVENT_READ:
            try:
                data = c.sock.recv(65536)
            except ConnectionResetError:
                self._finish(c, 'reset')
                return
            except BlockingIOError:
                return
            if not data:
                self._finish(c, 'eof')
                return
            c.buf += data
            while b'\n' in c.buf:
                line, c.buf = c.buf.split(b'\n', 1)
                line = line.rstrip(b'\r').decode('utf-8', 'replace')
                c.lines.append(line)
                if c.first is None:
                    c.first = line
                    c.t_first = time.monotonic()

    def _trickle(self, now):
        for c in self.clients:
            if c.trickle is None or c.end or c.next_send is None or \
                    now < c.next_send:
                continue
            data, period = c.trickle
            byte = data[:1]
            c.trickle = (data[1:] + byte, period)
            try:
                c.sock.send(byte)
            except OSError:
                self._finish(c, 'reset')
                continue
            c.next_send = now + period

    def run(self, pred=None, timeout=10.0):
        """Process events until pred() holds (True) or timeout (False)."""
        end = time.monotonic() + timeout
        while True:
            if pred is not None and pred():
                return True
            now = time.monotonic()
            if now >= end:
                return pred is None
            for key, mask in self.sel.select(min(0.05, end - now)):
                self._on_event(key.data, mask)
            self._trickle(time.monotonic())

    def trickle(self, clients, data, period):
        """Each client sends data one byte every period seconds, cycling."""
        now = time.monotonic()
        for c in clients:
            c.trickle = (data, period)
            c.next_send = now

    def send(self, clients, data):
        for c in clients:
            if not c.end:
                c.sock.setblocking(True)
                c.sock.sendall(data)
                c.sock.setblocking(False)

    def close(self, clients=None):
        for c in list(clients if clients is not None else self.clients):
            if not c.end:
                self._finish(c, 'closed')

    def stats(self, clients=None):
        out = {}
        for c in clients if clients is not None else self.clients:
            key = (c.first or '-')[:3] + '/' + (c.end or 'open')
            out[key] = out.get(key, 0) + 1
        return out


# ------------------------------------------------------------ a scripted backend

class ScriptBackend:
    """A backend on 127.0.0.1:<free port> whose dialogue is a Python
    function script(conn) run on a thread per connection, after the PROXY
    v2 header was read. conn is a BackendConn."""

    def __init__(self, script):
        self.script = script
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(('127.0.0.1', 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.errors = []
        self.conns = []
        self.done = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(s,), daemon=True)
            t.start()

    def _run(self, s):
        conn = BackendConn(s)
        with self.done:
            self.conns.append(conn)
        try:
            conn.read_proxy_v2()
            self.script(conn)
        except Exception as e:       # reported by the test
            with self.done:
                self.errors.append(repr(e))
        finally:
            conn.finish()
            with self.done:
                conn.finished = True
                self.done.notify_all()

    def wait_done(self, n, timeout=10):
        with self.done:
            return self.done.wait_for(
                lambda: sum(1 for c in self.conns if c.finished) >= n,
                timeout)

    def stop(self):
        self._stop = True
        self.lsock.close()


class BackendConn:
    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(20)
        self.buf = b''
        self.received = 0
        self.finished = False
        self.closed = False

    def read_proxy_v2(self):
        head = self._exact(16)
        if head[:12] != b'\r\n\r\n\x00\r\nQUIT\n':
            raise ValueError('no PROXY v2 header: %r' % head)
        self._exact(struct.unpack('!H', head[14:16])[0])

    def _exact(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('closed after %d of %d bytes' %
                               (len(self.buf), n))
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def say(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def line(self):
        while b'\n' not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('closed, no line: %r' % self.buf[-80:])
            self.buf += data
        out, self.buf = self.buf.split(b'\n', 1)
        return out.rstrip(b'\r').decode('utf-8', 'replace')

    def expect(self, prefix):
        got = self.line()
        if not got.upper().startswith(prefix.upper()):
            raise ValueError('expected %r, got %r' % (prefix, got))
        return got

    def read_some(self, n):
        """Read until at least n body bytes came (or EOF); returns count."""
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        got = len(self.buf)
        self.received += got
        self.buf = b''
        return got

    def drain(self):
        """Read until the peer closes; returns the bytes seen."""
        total = len(self.buf)
        self.buf = b''
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return total
                total += len(data)
        except OSError:
            return total

    def greet_and_open_message(self):
        """220, EHLO, MAIL, RCPT, DATA -> 354."""
        self.say('220 script ESMTP\r\n')
        self.expect('EHLO')
        self.say('250-script\r\n250 PIPELINING\r\n')
        self.expect('MAIL')
        self.say('250 2.1.0 Ok\r\n')
        self.expect('RCPT')
        self.say('250 2.1.5 Ok\r\n')
        self.expect('DATA')
        self.say('354 End data with <CR><LF>.<CR><LF>\r\n')

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack('ii', 1, 0))
        self.sock.close()
        self.closed = True

    def finish(self):
        if not self.closed:
            try:
                self.sock.close()
            except OSError:
                pass
            self.closed = True
