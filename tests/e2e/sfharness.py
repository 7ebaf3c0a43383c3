# SPDX-License-Identifier: MIT
"""Shared end-to-end harness (stdlib only): starts smtpfront, the test
backend and HAProxy as subprocesses, collects their output on threads and
lets tests wait for lines with condition variables; SMTP clients (smtplib
and a raw socket client for pipelining and byte-level checks); FNV-1a 64;
the session log parser; a config builder."""

import errno
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

SOURCE_ROOT = os.environ.get(
    'SMTPFRONT_SOURCE_ROOT',
    os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))
BUILD_ROOT = os.environ.get('SMTPFRONT_BUILD_ROOT', '')


def _bin(env, *relpath):
    path = os.environ.get(env)
    if path:
        return path
    if BUILD_ROOT:
        return os.path.join(BUILD_ROOT, *relpath)
    return ''


SMTPFRONT_BIN = _bin('SMTPFRONT_BIN', 'cmd', 'smtpfront')
SMTPFRONTCTL_BIN = _bin('SMTPFRONTCTL_BIN', 'cmd', 'smtpfrontctl')
TEST_BACKEND_BIN = _bin('TEST_BACKEND_BIN', 'tests', 'smtpfront-test-backend')
HAPROXY_BIN = shutil.which('haproxy') or '/usr/sbin/haproxy'

# Which front end test_*.py drive: 'smtpfront' (the default and what meson
# runs) or 'haproxy' (to check the tests themselves against a known-good
# PROXY sender; smtpfront-only checks are skipped then).
FRONT = os.environ.get('SFTEST_FRONT', 'smtpfront')

FNV_OFFSET = 0xcbf29ce484222325
FNV_PRIME = 0x100000001b3
_MASK64 = (1 << 64) - 1


class HarnessError(Exception):
    pass


# ---------------------------------------------------------------- helpers

def fnv1a64(data, h=FNV_OFFSET):
    """64-bit FNV-1a of data; pass the previous value as h to continue."""
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & _MASK64
    return h


def free_port(host='127.0.0.1'):
    """A port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_KV_RE = re.compile(r'(\S+?)=("(?:[^"\\]|\\.)*"|\S*)|(\S+)')


def parse_kv(line):
    """Parse a key=value log line (SPEC.md "Session log") into a dict.
    Quoted values are unquoted; bare words map to True; the first bare
    word is also kept as '_tag' (e.g. 'session')."""
    out = {}
    for m in _KV_RE.finditer(line):
        if m.group(3) is not None:
            out.setdefault('_tag', m.group(3))
            out[m.group(3)] = True
            continue
        val = m.group(2)
        if val.startswith('"') and val.endswith('"') and len(val) >= 2:
            val = re.sub(r'\\(.)', r'\1', val[1:-1])
        out[m.group(1)] = val
    return out


def split_endpoint(text):
    """'[ip]:port' -> (ip, port)."""
    m = re.fullmatch(r'\[([^\]]*)\]:(\d+)', text)
    if not m:
        raise ValueError('not an [ip]:port endpoint: %r' % text)
    return m.group(1), int(m.group(2))


class _LineCollector:
    """Reads a pipe on a thread, stores lines, wakes waiters."""

    def __init__(self, stream, name, on_line=None):
        self.cond = threading.Condition()
        self.lines = []
        self.eof = False
        self.name = name
        self._on_line = on_line
        # Cleared by pause(): the thread stops reading (the pipe fills).
        self._gate = threading.Event()
        self._gate.set()
        self._thread = threading.Thread(target=self._run, args=(stream,),
                                        name=name, daemon=True)
        self._thread.start()

    def _run(self, stream):
        try:
            for raw in stream:
                self._gate.wait()
                line = raw.decode('utf-8', 'replace').rstrip('\r\n')
                if os.environ.get('SFTEST_VERBOSE'):
                    print('[%s] %s' % (self.name, line), flush=True)
                with self.cond:
                    self.lines.append(line)
                    if self._on_line:
                        self._on_line(line)
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()
            stream.close()

    def wait_for(self, pred, timeout):
        """Wait until pred() (called under the lock) is truthy or EOF."""
        with self.cond:
            self.cond.wait_for(lambda: pred() or self.eof, timeout)
            return pred()

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def pause(self):
        """Stop reading: what the process writes stays in the pipe (and at
        most one read's worth in this reader) until resume()."""
        self._gate.clear()

    def resume(self):
        self._gate.set()

    def join(self, timeout=5):
        self._gate.set()
        self._thread.join(timeout)


def _terminate(proc, sig, timeout, group=False):
    """Signal proc, wait, kill on timeout; returns the exit code."""
    if proc.poll() is None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except ProcessLookupError:
            pass
        proc.wait(10)
        return None


# ---------------------------------------------------------------- backend

class Backend:
    """The test backend (tests/backend.c) on 127.0.0.1:<free port>."""

    def __init__(self, mode='normal', proxy='any', name=None, teaser_ms=None,
                 listen='127.0.0.1:0', extra_args=(), ready_timeout=10):
        if not TEST_BACKEND_BIN or not os.access(TEST_BACKEND_BIN, os.X_OK):
            raise HarnessError('test backend binary not found (%r); set '
                               'TEST_BACKEND_BIN' % TEST_BACKEND_BIN)
        self.mode = mode
        self.name = name or 'backend-%s' % mode
        cmd = [TEST_BACKEND_BIN, '--listen', listen, '--proxy', proxy,
               '--mode', mode, '--name', self.name]
        if teaser_ms is not None:
            cmd += ['--teaser-ms', str(teaser_ms)]
        cmd += list(extra_args)
        self.ports = []
        self._sessions = []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._out = _LineCollector(self.proc.stdout, 'backend:' + self.name,
                                   self._on_line)
        self._err = _LineCollector(self.proc.stderr,
                                   'backend-err:' + self.name)
        if not self._out.wait_for(lambda: self.ports, ready_timeout):
            self.stop()
            raise HarnessError('backend did not print "ready": %s' %
                               '\n'.join(self._err.snapshot()))

    def _on_line(self, line):        # called under the collector's lock
        if line.startswith('ready '):
            self.ports = [int(p) for p in line.split()[1:]]
        elif line.startswith('session '):
            self._sessions.append(parse_kv(line))

    @property
    def port(self):
        return self.ports[0]

    @property
    def addr(self):
        return '127.0.0.1:%d' % self.port

    def sessions(self, pred=None):
        """Parsed session lines so far (optionally filtered)."""
        with self._out.cond:
            return [s for s in self._sessions if pred is None or pred(s)]

    def wait_sessions(self, n, timeout=10, pred=None):
        """Wait until at least n session lines (matching pred) arrived;
        returns them; raises HarnessError on timeout."""
        def enough():
            return sum(1 for s in self._sessions
                       if pred is None or pred(s)) >= n
        if not self._out.wait_for(enough, timeout):
            raise HarnessError('backend %s: %d session lines after %ss, '
                               'wanted %d' % (self.name,
                                              len(self.sessions(pred)),
                                              timeout, n))
        return self.sessions(pred)

    def stderr_lines(self):
        return self._err.snapshot()

    def stop(self, sig=signal.SIGTERM, timeout=10):
        rc = _terminate(self.proc, sig, timeout)
        self._out.join()
        self._err.join()
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- config

def _yaml_scalar(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))      # a JSON string is a YAML double-quoted one


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (enough for configs)."""
    pad = '  ' * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append('%s%s:' % (pad, k))
                out.append(to_yaml(v, indent + 1))
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                out.append('%s%s:' % (pad, k))
                out.append(to_yaml(v, indent + 1))
            elif isinstance(v, list):
                out.append('%s%s: [%s]' % (pad, k, ', '.join(
                    _yaml_scalar(x) for x in v)))
            elif isinstance(v, dict):
                out.append('%s%s: {}' % (pad, k))
            else:
                out.append('%s%s: %s' % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                sub = to_yaml(item, indent + 1).split('\n')
                out.append('%s- %s' % (pad, sub[0].lstrip()))
                out.extend(sub[1:])
            else:
                out.append('%s- %s' % (pad, _yaml_scalar(item)))
    else:
        out.append(pad + _yaml_scalar(obj))
    return '\n'.join(out)


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def make_config_dict(listen_port, backends, proxy='v2', retries=2,
                     listener=None, pool=None, health=None, **overrides):
    """The config as a dict: listener 'smtp' on 127.0.0.1:listen_port, pool
    'pool' with servers from backends = [(name, port | 'host:port'
    [, {extra server keys}]), ...]. listener/pool/health dicts are merged
    into those sections; other keyword arguments are top-level keys."""
    servers = []
    for b in backends:
        name, where = b[0], b[1]
        srv = {'name': name,
               'address': where if isinstance(where, str)
               else '127.0.0.1:%d' % where}
        if len(b) > 2:
            srv.update(b[2])
        servers.append(srv)
    lst = {'name': 'smtp', 'bind': ['127.0.0.1:%d' % listen_port],
           'pool': 'pool'}
    pl = {'proxy_protocol': proxy, 'retries': retries,
          'connect_timeout': '2s', 'greeting_timeout': '5s'}
    if health:
        pl['health'] = dict(health)
    pl['servers'] = servers
    _merge(lst, listener or {})
    _merge(pl, pool or {})
    # servers last reads better
    pl['servers'] = pl.pop('servers')
    cfg = {'workers': 2, 'hostname': 'sf.test', 'shutdown_timeout': '10s',
           'log': {'target': 'stderr', 'level': 'info'},
           'control': {'socket': '@DIR@/control.sock'},
           'listeners': [lst],
           'pools': {'pool': pl}}
    return _merge(cfg, overrides)


def make_config(listen_port, backends, proxy='v2', retries=2, **overrides):
    """YAML text of make_config_dict(); '@DIR@' is replaced by Smtpfront with
    its temp directory (control socket)."""
    return to_yaml(make_config_dict(listen_port, backends, proxy, retries,
                                    **overrides)) + '\n'


# ---------------------------------------------------------------- smtpfront

class Smtpfront:
    """smtpfront -c <temp>/smtpfront.yaml in the foreground, its own process
    group; stderr and stdout lines collected."""

    # smtpfront never blocks on its log (SPEC.md: lines that cannot be
    # written are dropped and counted). Tests that count session lines
    # read them through a pipe as large as Linux allows (1 MiB by
    # default), so a burst of a thousand lines while the collector thread
    # is busy is not dropped; a test of the dropping itself passes
    # stderr_pipe_bytes=0 (the kernel's 64 KiB).
    STDERR_PIPE_BYTES = 1 << 20

    def __init__(self, config, args=(), binary=None, env=None,
                 preexec_fn=None, wrapper=(), pass_fds=(),
                 stderr_pipe_bytes=None):
        binary = binary or SMTPFRONT_BIN
        if not binary or not os.access(binary, os.X_OK):
            raise HarnessError('smtpfront binary not found (%r); set '
                               'SMTPFRONT_BIN' % binary)
        self.dir = tempfile.mkdtemp(prefix='sftest-')
        if isinstance(config, dict):
            config = to_yaml(config) + '\n'
        self.config_text = config.replace('@DIR@', self.dir)
        self.config_path = os.path.join(self.dir, 'smtpfront.yaml')
        with open(self.config_path, 'w') as f:
            f.write(self.config_text)
        self.control_socket = os.path.join(self.dir, 'control.sock')
        self._session_lines = []
        self.proc = subprocess.Popen(
            list(wrapper) + [binary, '-c', self.config_path] + list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, env=env,
            preexec_fn=preexec_fn, pass_fds=tuple(pass_fds))
        self.pid = self.proc.pid
        want = (self.STDERR_PIPE_BYTES if stderr_pipe_bytes is None
                else stderr_pipe_bytes)
        if want:
            try:
                import fcntl
                fcntl.fcntl(self.proc.stderr.fileno(), 1031, want)
            except OSError:         # F_SETPIPE_SZ: over pipe-max-size
                pass
        self._err = _LineCollector(self.proc.stderr, 'smtpfront',
                                   self._on_line)
        self._out = _LineCollector(self.proc.stdout, 'smtpfront-out')

    def _on_line(self, line):        # under the collector's lock
        if re.search(r'\bsession client=', line):
            self._session_lines.append(parse_kv(line[line.index('session'):]))

    def write_config(self, config):
        """Replace the config file (for reload tests)."""
        if isinstance(config, dict):
            config = to_yaml(config) + '\n'
        self.config_text = config.replace('@DIR@', self.dir)
        with open(self.config_path, 'w') as f:
            f.write(self.config_text)

    def logs(self):
        return self._err.snapshot()

    def mark(self):
        """Index of the next log line, for wait_log(since=...)."""
        with self._err.cond:
            return len(self._err.lines)

    def wait_log(self, regex, timeout=10, since=0):
        """First stderr line (from index since) matching regex: its
        re.Match. Raises HarnessError on timeout or process exit."""
        rx = re.compile(regex)
        found = []

        def match():
            for line in self._err.lines[since:]:
                m = rx.search(line)
                if m:
                    found.append(m)
                    return True
            return False
        if not self._err.wait_for(match, timeout):
            raise HarnessError('smtpfront: no log line /%s/ within %ss '
                               '(exit=%s); log:\n%s' % (
                                   regex, timeout, self.proc.poll(),
                                   '\n'.join(self.logs()[-40:])))
        return found[0]

    def wait_ready(self, timeout=15):
        return self.wait_log(r'\bready\b', timeout)

    def pause_stderr(self):
        """Nobody reads smtpfront's stderr until resume_stderr()."""
        self._err.pause()

    def resume_stderr(self):
        self._err.resume()

    def sessions(self, pred=None):
        with self._err.cond:
            return [s for s in self._session_lines
                    if pred is None or pred(s)]

    def wait_sessions(self, n, timeout=10, pred=None):
        def enough():
            return sum(1 for s in self._session_lines
                       if pred is None or pred(s)) >= n
        if not self._err.wait_for(enough, timeout):
            raise HarnessError('smtpfront: %d session lines after %ss, '
                               'wanted %d; log:\n%s' % (
                                   len(self.sessions(pred)), timeout, n,
                                   '\n'.join(self.logs()[-40:])))
        return self.sessions(pred)

    def children(self):
        return child_pids(self.pid)

    def stop_checked(self, test, timeout=20):
        """A test's cleanup: stop, and fail `test` with the last log lines
        unless smtpfront exited 0; the streams are closed either way."""
        try:
            rc = self.stop(timeout=timeout)
            test.assertEqual(rc, 0, 'smtpfront exit %s; log:\n%s'
                             % (rc, '\n'.join(self.logs()[-30:])))
        finally:
            self.__exit__(None, None, None)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signal the master and wait; kills the whole group on timeout.
        Returns the exit code (None when it had to be killed)."""
        rc = _terminate(self.proc, sig, timeout)
        try:                          # no orphaned workers, ever
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._err.join()
        self._out.join()
        # A sanitizer report from any child (worker, health process) fails
        # the stop even though the master itself exited cleanly.
        bad = [l for l in self.logs()
               if 'Sanitizer' in l or 'runtime error:' in l]
        if bad:
            sys.stderr.write('smtpfront sanitizer report:\n%s\n'
                             % '\n'.join(bad[:40]))
            return 'sanitizer'
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop(timeout=5)
        else:
            self.stop(timeout=1)
        shutil.rmtree(self.dir, ignore_errors=True)


class MailLoad:
    """One client thread per source address sending one mail per session until
    stopped; one record each (src, port, replies, banner, ok, refused, error,
    t0/t1). Each session binds a client port it never used before, so a record
    joins exactly one smtpfront session line."""

    def __init__(self, port, sources, body, rcpt, port_base=12000, port_span=2000):
        self.port = port
        self.rcpt = rcpt
        self.sources = list(sources)
        self.body = body
        self.port_base, self.port_span = port_base, port_span
        self.next_port = {src: port_base + i * port_span
            for i, src in enumerate(self.sources)}
        self.cond = threading.Condition()
        self.records = []
        self.stopping = False
        self.threads = [threading.Thread(target=self._run, args=(src,), daemon=True)
            for src in self.sources]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        with self.cond:
            self.stopping = True
        for t in self.threads:
            t.join(60)
        return not any(t.is_alive() for t in self.threads)

    @property
    def ok(self):
        """Sessions that delivered their mail and ended in 221."""
        with self.cond:
            return sum(1 for r in self.records if r['ok'])

    @property
    def failures(self):
        """The records of every session that did not."""
        with self.cond:
            return [r for r in self.records if not r['ok']]

    def wait_ok(self, n, timeout):
        """Wait until n more sessions than now succeeded; False on timeout."""
        with self.cond:
            k = len(self.records)
            return self.cond.wait_for(lambda: sum(
                1 for r in self.records[k:] if r['ok']) >= n, timeout)

    def wait(self, pred, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.records), timeout)

    def _run(self, src):
        while True:
            with self.cond:
                if self.stopping:
                    return
            rec = self._session(src)
            with self.cond:
                self.records.append(rec)
                self.cond.notify_all()

    def _connect(self, src):
        """A connection from src and a port it never used before.

        The kernel reuses a client port soon after a session ends; a port used once
        joins each client session to exactly one smtpfront session line.
        """
        while True:
            port = self.next_port[src]
            self.next_port[src] += 1
            if port >= self.port_base + (self.sources.index(src) + 1) * self.port_span:
                raise RuntimeError('client %s ran out of ports' % src)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                # a TIME_WAIT of an earlier run does not block the bind
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((src, port))
            except OSError as e:
                sock.close()
                if e.errno == errno.EADDRINUSE:
                    continue
                raise
            sock.settimeout(20)
            try:
                sock.connect(('127.0.0.1', self.port))
            except OSError as e:
                sock.close()
                if e.errno == errno.EADDRNOTAVAIL:  # that 4-tuple is in TIME_WAIT
                    continue
                raise
            return sock

    def _session(self, src):
        rec = {'src': src, 't0': time.monotonic(), 't1': None, 'port': None,
            'stage': 'connect', 'replies': [], 'banner': None, 'mail_ok': False,
            'ok': False, 'refused': False, 'error': None}
        s = None
        try:
            sock = self._connect(src)
            rec['port'] = sock.getsockname()[1]
            s = smtplib.SMTP(timeout=20)
            s.sock = sock
            s._host = '127.0.0.1'
            rec['stage'] = 'greeting'
            code, msg = s.getreply()
            rec['replies'].append(code)
            rec['banner'] = msg.decode('utf-8', 'replace')
            if code != 220:
                rec['refused'] = True
                return rec
            for stage, step, want in (
                    ('ehlo', lambda: s.ehlo('client.test'), 250),
                    ('mail', lambda: s.mail('load@client.test'), 250),
                    ('rcpt', lambda: s.rcpt(self.rcpt), 250),
                    ('data', lambda: s.data(self.body), 250)):
                rec['stage'] = stage
                code = step()[0]
                rec['replies'].append(code)
                if code != want:
                    rec['refused'] = True
                    return rec
            rec['mail_ok'] = True
            rec['stage'] = 'quit'
            code = s.docmd('QUIT')[0]
            rec['replies'].append(code)
            rec['ok'] = code == 221
            rec['refused'] = not rec['ok']
        except smtplib.SMTPResponseException as e:
            rec['replies'].append(e.smtp_code)
            rec['refused'] = True
            rec['error'] = repr(e)
        except (OSError, smtplib.SMTPException) as e:
            rec['error'] = repr(e)
        finally:
            rec['t1'] = time.monotonic()
            if s is not None:
                s.close()
            elif rec['port'] is not None:
                sock.close()
        return rec


def poll_until(fetch, pred, what, timeout=15, interval=0.05):
    """fetch() until pred(value) holds; returns that value. For state that
    has no event to await (counters and health in shared memory, read over
    the control socket); bounded, and the failure shows the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if pred(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError('%s: still not so after %ss; last: %s' % (
                what, timeout, json.dumps(value)))
        time.sleep(interval)


class ControlClient:
    """unittest.TestCase mixin: smtpfrontctl against a Smtpfront's control
    socket. ctl_timeout bounds every call."""
    ctl_timeout = 15

    def ctl(self, sf, *args, socket_path=None, prefix=(), binary=None):
        return subprocess.run(list(prefix) + [
            binary or SMTPFRONTCTL_BIN, '-s',
            socket_path or sf.control_socket] + list(args),
            capture_output=True, text=True, timeout=self.ctl_timeout)

    def status(self, sf):
        r = self.ctl(sf, 'status', '--json')
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def wait_status(self, sf, pred, what):
        return poll_until(lambda: self.status(sf), pred, what,
                          self.ctl_timeout)


def process_state(pid):
    """What a process is doing, for a failure message: its state, wait
    channel, current syscall and open descriptors (root can read them)."""
    out = []
    for name in ('wchan', 'syscall'):
        try:
            with open('/proc/%d/%s' % (pid, name)) as f:
                out.append('%s: %s' % (name, f.read().strip()))
        except OSError as e:
            out.append('%s: %s' % (name, e))
    try:
        with open('/proc/%d/status' % pid) as f:
            out += [l.strip() for l in f if l.startswith('State:')]
        fds = {}
        for fd in os.listdir('/proc/%d/fd' % pid):
            try:
                fds[int(fd)] = os.readlink('/proc/%d/fd/%s' % (pid, fd))
            except OSError:
                pass
        out.append('fds: %s' % ' '.join('%d=%s' % kv for kv in sorted(
            fds.items())))
    except OSError as e:
        out.append(str(e))
    return 'pid %d: %s' % (pid, '; '.join(out))


def backend_load(port, threads=4):
    """A started MailLoad for the test backend: one client thread per
    address from 127.0.0.50 up."""
    load = MailLoad(port, ['127.0.0.%d' % (50 + i) for i in range(threads)],
                    'Subject: load\r\n\r\nbody\r\n', 'b@example.org')
    load.start()
    return load


# ---------------------------------------------------------------- haproxy

class Haproxy:
    """HAProxy in mode tcp as a known-good PROXY sender: one frontend on
    127.0.0.1:listen_port (or on every address of `binds`, 'ip:port' or
    '[v6]:port'), servers = [(name, port | 'host:port')], proxy v1|v2|none;
    server_opts is added to every server line (e.g. 'proxy-v2-options
    crc32c')."""

    def __init__(self, listen_port, backends, proxy='v2', ready_timeout=15,
                 binds=None, server_opts=''):
        self.dir = tempfile.mkdtemp(prefix='sftest-haproxy-')
        opt = {'v1': ' send-proxy', 'v2': ' send-proxy-v2', 'none': ''}[proxy]
        if server_opts:
            opt += ' ' + server_opts
        binds = binds or ['127.0.0.1:%d' % listen_port]
        lines = ['global', '  maxconn 4096', 'defaults', '  mode tcp',
                 '  timeout connect 5s', '  timeout client 10m',
                 '  timeout server 10m', 'frontend smtp']
        lines += ['  bind %s' % b for b in binds]
        lines += ['  default_backend pool', 'backend pool']
        for b in backends:
            where = b[1] if isinstance(b[1], str) else '127.0.0.1:%d' % b[1]
            lines.append('  server %s %s%s' % (b[0], where, opt))
        self.config_path = os.path.join(self.dir, 'haproxy.cfg')
        with open(self.config_path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        self.proc = subprocess.Popen(
            [HAPROXY_BIN, '-W', '-db', '-f', self.config_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self._err = _LineCollector(self.proc.stderr, 'haproxy')
        ok = self._err.wait_for(
            lambda: any('Loading success' in x for x in self._err.lines),
            ready_timeout)
        if not ok:
            self.stop()
            raise HarnessError('haproxy did not start:\n' +
                               '\n'.join(self._err.snapshot()))

    def logs(self):
        return self._err.snapshot()

    def children(self):
        return child_pids(self.pid)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        rc = _terminate(self.proc, sig, timeout)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._err.join()
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- /proc

def listens(pid, port):
    """True when pid holds the listening socket on port (a worker)."""
    inodes = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            link = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        if link.startswith('socket:['):
            inodes.add(link[8:-1])
    with open('/proc/net/tcp') as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[3] == '0A' and int(p[1].split(':')[1], 16) == port \
                    and p[9] in inodes:
                return True
    return False


def child_pids(pid):
    """Direct children of pid."""
    kids = []
    try:
        for tid in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/children' % (pid, tid)) as f:
                kids += [int(x) for x in f.read().split()]
        return kids
    except (FileNotFoundError, ProcessLookupError):
        pass
    out = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(pid)],
                         capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def rss_kb(pid):
    """VmRSS of pid in KiB (0 when it is gone)."""
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree_rss_kb(pid, include_self=True):
    """VmRSS of pid (optionally) plus all its children, in KiB."""
    total = rss_kb(pid) if include_self else 0
    return total + sum(rss_kb(c) for c in child_pids(pid))


# ---------------------------------------------------------------- SMTP

def smtp_session(host, port, source='127.0.0.1', timeout=10, **kw):
    """An smtplib.SMTP connected from source (any port); greeting read."""
    return smtplib.SMTP(host, port, source_address=(source, 0),
                        timeout=timeout, **kw)


class SMTPReply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def text(self):
        return '\n'.join(self.lines)

    def __repr__(self):
        return 'SMTPReply(%d, %r)' % (self.code, self.lines)


class RawSMTP:
    """A byte-level SMTP client: writes exactly what it is given, parses
    replies strictly, reports clean EOF vs reset."""

    def __init__(self, host, port, source='127.0.0.1', timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0))
        self.local = self.sock.getsockname()[:2]
        self.local_port = self.local[1]
        self.buf = b''
        self.sent_bytes = 0             # everything written
        self.recv_bytes = 0             # everything read

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)
        self.sent_bytes += len(data)

    def _readline(self):
        while b'\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('connection closed; pending %r' % self.buf)
            self.recv_bytes += len(chunk)
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.rstrip(b'\r').decode('utf-8', 'replace')

    def read_reply(self):
        lines = []
        code = None
        while True:
            line = self._readline()
            m = re.match(r'(\d{3})([ -]|$)(.*)', line)
            if not m or (code is not None and int(m.group(1)) != code):
                raise ValueError('bad reply line %r' % line)
            code = int(m.group(1))
            lines.append(m.group(3))
            if m.group(2) != '-':
                return SMTPReply(code, lines)

    def cmd(self, line):
        self.send(line + '\r\n')
        return self.read_reply()

    def wait_close(self, timeout=10):
        """Read until the peer closes. Returns (data, 'eof'|'reset')."""
        self.sock.settimeout(timeout)
        data, self.buf = self.buf, b''
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data, 'eof'
                self.recv_bytes += len(chunk)
                data += chunk
        except ConnectionResetError:
            return data, 'reset'

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_QUEUED_RE = re.compile(r'bytes=(\d+) fnv1a=([0-9a-fA-F]+)')


def queued_info(reply):
    """(bytes, fnv1a) from the backend's 250 'queued bytes=N fnv1a=H'."""
    m = _QUEUED_RE.search(reply.text)
    if not m:
        raise ValueError('no bytes=/fnv1a= in %r' % (reply,))
    return int(m.group(1)), int(m.group(2), 16)


def dot_stuff(body):
    """Dot-stuff body (bytes, CRLF lines) and make sure it ends in CRLF:
    what goes between 354 and '.\\r\\n'."""
    if body and not body.endswith(b'\r\n'):
        body += b'\r\n'
    out = body.replace(b'\r\n.', b'\r\n..')
    if out.startswith(b'.'):
        out = b'.' + out
    return out


def make_body(size, seed=0):
    """A message of about size bytes: headers, CRLF lines of varied length,
    some starting with '.', some 8-bit bytes. Not dot-stuffed."""
    import random
    rnd = random.Random(seed)
    head = ('From: <a@example.org>\r\nTo: <b@example.net>\r\n'
            'Subject: test %d\r\n\r\n' % seed).encode()
    alphabet = bytes(range(0x20, 0x7f)) + bytes(range(0xa0, 0x100))
    lines = [head]
    total = len(head)
    while total < size:
        n = rnd.randint(0, 200)
        line = bytes(rnd.choice(alphabet) for _ in range(n))
        if rnd.random() < 0.05:
            line = b'.' + line
        lines.append(line + b'\r\n')
        total += n + 2
    return b''.join(lines)


def make_big_body(size):
    """A fast big body (size bytes, CRLF lines, a few leading dots)."""
    line = (b'.' + b'0123456789abcdefghijklmnopqrstuvwxyz' * 2 + b'\r\n')
    reps = size // len(line) + 1
    return (b'Subject: big\r\n\r\n' + line * reps)[:size - 2] + b'\r\n'


def send_pipelined(client, body, mail_from='<a@example.org>',
                   rcpts=('<b@example.net>',), quit_after=False):
    """One transaction as a PIPELINING client: MAIL, RCPT..., DATA in one
    write; then the dot-stuffed body and the terminator in one write
    (followed by QUIT when quit_after). Returns (sent_bytes, final reply,
    quit reply or None). Raises AssertionError on a wrong reply code."""
    group = 'MAIL FROM:%s\r\n' % mail_from
    group += ''.join('RCPT TO:%s\r\n' % r for r in rcpts)
    group += 'DATA\r\n'
    client.send(group)
    r = client.read_reply()
    if r.code != 250:
        raise AssertionError('MAIL: %r' % r)
    for _ in rcpts:
        r = client.read_reply()
        if r.code != 250:
            raise AssertionError('RCPT: %r' % r)
    r = client.read_reply()
    if r.code != 354:
        raise AssertionError('DATA: %r' % r)
    data = dot_stuff(body)
    client.send(data + b'.\r\n' + (b'QUIT\r\n' if quit_after else b''))
    final = client.read_reply()
    q = client.read_reply() if quit_after else None
    return data, final, q


def push_until_blocked(sock, limit, stall_timeout=2.0, chunk=None):
    """Write filler to sock (non-blocking) until `limit` bytes went out or
    nothing could be written for stall_timeout seconds (the peer, and
    everything between, stopped reading). Returns (bytes_sent, blocked).
    The wait is select() on writability, not a sleep."""
    import select
    chunk = chunk or (b'x' * 76 + b'\r\n') * 13443      # ~1 MiB of lines
    old_timeout = sock.gettimeout()
    sock.setblocking(False)
    sent = 0
    view = memoryview(chunk)
    off = 0
    try:
        while sent < limit:
            _, w, _ = select.select([], [sock], [], stall_timeout)
            if not w:
                return sent, True
            try:
                n = sock.send(view[off:off + min(len(chunk) - off,
                                                 limit - sent)])
            except BlockingIOError:
                continue
            sent += n
            off = (off + n) % len(chunk)
        return sent, False
    finally:
        sock.settimeout(old_timeout)


# ---------------------------------------------------------------- health log

_HEALTH_RE = re.compile(
    r'smtpfront\[(\d+)\]: (?:warning: |debug: )?health: server (\S+) '
    r'(?:is (UP|DOWN) \((.*)\)|(ok|failed): (.*) \([0-9.]+ ms\))$')


def health_events(sf, server=None, since=0):
    """The health process's lines about server ('POOL/NAME', or every
    server) from log index since, as dicts: pid, server, event ('UP' |
    'DOWN' for state changes; 'ok' | 'failed' for the debug line of a check
    that changed nothing), reason, index (log line number)."""
    out = []
    for i, line in enumerate(sf.logs()[since:], since):
        m = _HEALTH_RE.search(line)
        if not m or (server is not None and m.group(2) != server):
            continue
        out.append({'pid': int(m.group(1)), 'server': m.group(2),
                    'event': m.group(3) or m.group(5),
                    'reason': m.group(4) if m.group(3) else m.group(6),
                    'index': i})
    return out


def wait_health(sf, server, state=None, timeout=10, since=0):
    """Wait for the state-change line 'health: server POOL/NAME is STATE
    (REASON)' (any state when state is None) from log index since; returns
    its health_events() dict. Raises HarnessError on timeout."""
    rx = r'health: server %s is %s \(' % (re.escape(server),
                                          state or '(?:UP|DOWN)')
    sf.wait_log(rx, timeout, since=since)
    for ev in health_events(sf, server, since):
        if ev['event'] == state or (state is None and
                                    ev['event'] in ('UP', 'DOWN')):
            return ev
    raise HarnessError('health line matched /%s/ but did not parse' % rx)


# ---------------------------------------------------------------- running

def main():
    """unittest.main for every e2e script (test_*.py, postfix_*.py), with
    the exit status meson reads: 1 on a failure or an error (or when no
    test ran at all: a script that tests nothing is broken), 77 (SKIP) when
    every test was skipped, else 0. unittest's own exit is 0 for a run
    that skipped everything, which meson shows as OK."""
    import unittest
    prog = unittest.main(module='__main__', exit=False, verbosity=2)
    r = prog.result
    if not r.wasSuccessful():
        sys.exit(1)
    if r.testsRun == 0 and not r.skipped:
        print('FAIL: no test ran')
        sys.exit(1)
    # A class skipped in setUpClass adds a skip without a run.
    if len(r.skipped) >= r.testsRun:
        for _, why in r.skipped[:1]:
            print('SKIP:', why)
        sys.exit(77)
    sys.exit(0)
