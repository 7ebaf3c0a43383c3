# SPDX-License-Identifier: MIT
"""How sessions end, end to end (SPEC.md "Session log", issue "Hold the
port-25 line"): slow transfers both ways are activity, not timeouts; a
backend that closes, resets or half-closes mid-DATA is server-closed and the
client never sees a 250; a backend's 421 is its last_error; a client that
vanishes mid-DATA is client-closed; failing gates are greeting-failed;
QUIT/221 is ok even when the client then resets; smtp-source's 5,000
sessions are all ok; a backend that stops reading is ended by
server_timeout with memory bounded. Endings use a scripted Python backend
so each one happens exactly as named."""

import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import unittest

import crowd
import sfharness as h

TIMEOUT = 20


def big_reply(kib):
    line = '214-' + 'y' * 74 + '\r\n'
    return (line * (kib * 1024 // len(line))) + '214 end of help\r\n'


def serve_commands(conn, help_kib=300):
    """A small SMTP server: DATA bodies read to the end line, HELP answered
    with help_kib KiB, QUIT with 221."""
    conn.say('220 script ESMTP\r\n')
    while True:
        line = conn.line()
        verb = line[:4].upper()
        if verb == 'DATA':
            conn.say('354 End data with <CR><LF>.<CR><LF>\r\n')
            while conn.line() != '.':
                pass
            conn.say('250 2.0.0 Ok: queued\r\n')
        elif verb == 'HELP':
            conn.say(big_reply(help_kib))
        elif verb == 'QUIT':
            conn.say('221 2.0.0 Bye\r\n')
            return
        else:
            conn.say('250 Ok\r\n')


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
class EndingsTest(unittest.TestCase):

    def start(self, backends, **kw):
        port = h.free_port()
        cfg = h.make_config_dict(port, backends,
                                 health={'check': 'connect',
                                         'interval': '10s'},
                                 **kw)
        sf = h.Smtpfront(cfg)
        sf.port = port
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        return sf

    def script(self, fn):
        b = crowd.ScriptBackend(fn)
        self.addCleanup(b.stop)
        return b

    def session_of(self, sf, c):
        return sf.wait_sessions(1, TIMEOUT, pred=lambda s: s.get('client') ==
                                '[127.0.0.1]:%d' % c.local_port)[0]

    def open_message(self, sf):
        c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply().code, 220)
        self.assertEqual(c.cmd('EHLO client.test').code, 250)
        self.assertEqual(c.cmd('MAIL FROM:<a@client.test>').code, 250)
        self.assertEqual(c.cmd('RCPT TO:<b@server.test>').code, 250)
        self.assertEqual(c.cmd('DATA').code, 354)
        return c

    # ------------------------------------------------------ slow transfers

    def test_slow_upload_and_slow_reader_are_activity(self):
        """Timeouts of 2 s; one client uploads 1 KiB every 300 ms for 8 s,
        another reads a long reply 1 KiB every 300 ms for 8 s: both
        sessions end ok."""
        b = self.script(serve_commands)
        sf = self.start([('s', b.port)],
                        listener={'client_timeout': '2s'},
                        pool={'server_timeout': '2s'})
        results = {}

        def uploader():
            c = self.open_message(sf)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 8:
                c.send('x' * 1022 + '\r\n')
                time.sleep(0.3)
            done, bye = c.cmd('.').code, c.cmd('QUIT').code
            c.close()
            results['upload'] = (done, bye, self.session_of(sf, c)['result'])

        def reader():
            # A small receive buffer from the start, so the window is
            # small and what the client reads is what crosses the wire.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(TIMEOUT)
            sock.connect(('127.0.0.1', sf.port))
            self.addCleanup(sock.close)
            port = sock.getsockname()[1]
            data = b''
            while not data.endswith(b'\r\n'):
                data += sock.recv(1)
            self.assertTrue(data.startswith(b'220 '), data)
            sock.sendall(b'HELP\r\n')
            t0 = time.monotonic()
            data = b''
            while time.monotonic() - t0 < 8:
                data += sock.recv(1024)
                time.sleep(0.3)
            got = len(data)
            while not data.endswith(b'214 end of help\r\n'):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            code = 214 if data.endswith(b'214 end of help\r\n') else 0
            sock.sendall(b'QUIT\r\n')
            bye = sock.recv(1024)
            sock.close()
            s = sf.wait_sessions(1, TIMEOUT, pred=lambda s: s.get('client') ==
                                 '[127.0.0.1]:%d' % port)[0]
            results['reader'] = (code, got, int(bye[:3] or 0), s['result'])

        threads = [threading.Thread(target=f) for f in (uploader, reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results.get('upload'), (250, 221, 'ok'), results)
        code, got, quit_code, result = results.get('reader', (0,) * 4)
        self.assertEqual((code, quit_code, result), (214, 221, 'ok'),
                         results)
        self.assertLess(got, 200 * 1024, 'the reader was not slow')
        print('slow transfers: %s' % results)

    # ------------------------------------------------------ endings

    def server_ends_mid_data(self, how):
        def script(conn):
            conn.greet_and_open_message()
            conn.read_some(50000)
            if how == 'fin':
                conn.sock.shutdown(socket.SHUT_RDWR)
                conn.finish()
            elif how == 'reset':
                conn.reset()
            else:                           # half-close, then keep reading
                conn.sock.shutdown(socket.SHUT_WR)
                conn.drain()
        b = self.script(script)
        sf = self.start([('s', b.port)])
        c = self.open_message(sf)
        replies = b''
        body = (b'y' * 998 + b'\r\n') * 100
        try:
            for _ in range(100):            # 10 MB at most
                c.send(body)
            c.send('.\r\n')
        except OSError:
            pass
        try:
            data, end = c.wait_close(TIMEOUT)
            replies += data
        except OSError:
            pass
        self.assertNotIn(b'250', replies)
        c.close()
        s = self.session_of(sf, c)
        self.assertEqual(s['result'], 'server-closed', s)
        self.assertIn('mid-DATA', s.get('last_error', ''), s)
        return s

    def test_server_fin_mid_data(self):
        s = self.server_ends_mid_data('fin')
        self.assertIn('last reply: 354', s['last_error'])

    def test_server_reset_mid_data(self):
        s = self.server_ends_mid_data('reset')
        self.assertTrue(s['last_error'].startswith('server: '), s)

    def test_server_half_close_mid_data(self):
        self.server_ends_mid_data('half')

    def test_server_421_then_close(self):
        def script(conn):
            conn.say('220 script ESMTP\r\n')
            conn.expect('EHLO')
            conn.say('421 4.3.0 script Error: I/O error\r\n')
        b = self.script(script)
        sf = self.start([('s', b.port)])
        c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply().code, 220)
        self.assertEqual(c.cmd('EHLO client.test').code, 421)
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        s = self.session_of(sf, c)
        self.assertEqual((s['result'], s['last_error']),
                         ('server-closed', '421 4.3.0 script Error: I/O error'))

    def test_client_vanishes_mid_data(self):
        b = self.script(lambda conn: (conn.greet_and_open_message(),
                                      conn.drain()))
        sf = self.start([('s', b.port)])
        c = self.open_message(sf)
        c.send('Subject: cut\r\n\r\nhalf a body\r\n')
        c.close()
        s = self.session_of(sf, c)
        self.assertEqual((s['result'], s['last_error']),
                         ('client-closed', 'client closed mid-DATA'))

    def test_every_gate_attempt_busy_is_greeting_failed(self):
        def busy(conn):
            conn.say('421 4.3.2 All server ports are busy\r\n')
        b1, b2 = self.script(busy), self.script(busy)
        sf = self.start([('b1', b1.port), ('b2', b2.port)], retries=1)
        c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        r = c.read_reply()
        self.assertEqual((r.code, r.text), (
            421, '4.3.2 sf.test Service not available, try again later'))
        self.assertEqual(c.wait_close(TIMEOUT), (b'', 'eof'))
        c.close()
        s = self.session_of(sf, c)
        self.assertEqual((s['result'], s['attempts']), ('greeting-failed', '2'))
        self.assertIn('pool/b1: greeting 421 4.3.2', s['last_error'])
        self.assertIn('pool/b2: greeting 421 4.3.2', s['last_error'])

    def test_quit_221_ok_also_when_the_client_resets(self):
        b = self.script(serve_commands)
        sf = self.start([('s', b.port)])
        for reset in (False, True):
            c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
            self.assertEqual(c.read_reply().code, 220)
            self.assertEqual(c.cmd('QUIT').code, 221)
            if reset:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack('ii', 1, 0))
            c.close()
            s = self.session_of(sf, c)
            self.assertEqual(s['result'], 'ok', (reset, s))

    # ------------------------------------------------------ framing

    def spliced_during(self, sf, fn):
        """Run fn() with strace counting the workers' successful splice(2)
        calls; returns (fn's result, the count), or None for the count when
        strace cannot attach here."""
        if not shutil.which('strace'):
            return fn(), None
        out = os.path.join(sf.dir, 'strace.out')
        args = ['strace', '-f', '-e', 'trace=splice', '-o', out]
        for pid in sf.children():
            args += ['-p', str(pid)]
        st = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        try:
            attached = 0
            while attached < len(sf.children()):
                line = st.stderr.readline()
                if not line:
                    return fn(), None  # ptrace not allowed here
                attached += 'attached' in line
            result = fn()
        finally:
            st.terminate()
            st.wait(TIMEOUT)
            st.stderr.close()
        with open(out) as f:
            calls = re.findall(r'splice\(.*\) = (\d+)', f.read())
        return result, sum(1 for n in calls if int(n) > 0)

    def test_bdat_last_then_hang_up_is_ok(self):
        """BDAT 1048576 LAST (its LAST past the line's 16th byte), the
        chunk, the 250, then the client hangs up without QUIT: every
        command was answered and the message is done, so result=ok; the
        backend got the whole chunk, spliced."""
        size = 1 << 20
        chunk = bytes(range(256)) * (size // 256)
        got = {}

        def script(conn):
            conn.say('220 script ESMTP\r\n')
            conn.expect('EHLO')
            conn.say('250-script\r\n250 CHUNKING\r\n')
            conn.expect('MAIL')
            conn.say('250 2.1.0 Ok\r\n')
            conn.expect('RCPT')
            conn.say('250 2.1.5 Ok\r\n')
            got['line'] = conn.line()
            got['chunk'] = conn._exact(size)
            conn.say('250 2.0.0 Ok: %d bytes queued\r\n' % size)
            got['after'] = conn.drain()
            done.set()
        done = threading.Event()
        b = self.script(script)
        sf = self.start([('s', b.port)], workers=1)

        def session():
            c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
            self.addCleanup(c.close)
            self.assertEqual(c.read_reply().code, 220)
            self.assertEqual(c.cmd('EHLO client.test').code, 250)
            self.assertEqual(c.cmd('MAIL FROM:<a@client.test>').code, 250)
            self.assertEqual(c.cmd('RCPT TO:<b@server.test>').code, 250)
            c.send(b'BDAT %d LAST\r\n' % size + chunk)
            self.assertEqual(c.read_reply().code, 250)
            c.close()
            return self.session_of(sf, c)
        s, spliced = self.spliced_during(sf, session)
        # (the health checks' connections end the script early: only the
        # session's run counts)
        self.assertTrue(done.wait(TIMEOUT), b.errors)
        self.assertEqual(got.get('line'), 'BDAT %d LAST' % size)
        self.assertTrue(got.get('chunk') == chunk, 'chunk differs')
        self.assertEqual(got.get('after'), 0)
        self.assertEqual(s['result'], 'ok', s)
        sent = sum(len(x) for x in (
            'EHLO client.test\r\n', 'MAIL FROM:<a@client.test>\r\n',
            'RCPT TO:<b@server.test>\r\n', 'BDAT %d LAST\r\n' % size)) + size
        self.assertEqual(s['bytes_in'], str(sent), s)
        print('BDAT %d LAST then hang-up: %s, %s splice(2) calls' % (
            size, s['result'], spliced))
        if spliced is not None:
            self.assertGreater(spliced, 0, 'the chunk was not spliced')

    def bare_lf_session(self, quit):
        """A whole session with bare LF line ends, a 2 MB body with bare
        LF lines; returns (session line, what the backend got, splice
        count)."""
        line = b'z' * 998 + b'\n'
        body = b'Subject: bare LF\n\n' + line * 2000 + b'..dot\n'
        got = {}

        def script(conn):
            conn.say('220 script ESMTP\r\n')
            conn.expect('EHLO')
            conn.say('250-script\r\n250 PIPELINING\r\n')
            conn.expect('MAIL')
            conn.say('250 2.1.0 Ok\r\n')
            conn.expect('RCPT')
            conn.say('250 2.1.5 Ok\r\n')
            got['data'] = conn.line()
            conn.say('354 End data with <CR><LF>.<CR><LF>\r\n')
            got['body'] = conn._exact(len(body) + 2)
            conn.say('250 2.0.0 Ok: queued\r\n')
            if quit:
                conn.expect('QUIT')
                conn.say('221 2.0.0 Bye\r\n')
            got['after'] = conn.drain()
            done.set()
        done = threading.Event()
        b = self.script(script)
        sf = self.start([('s', b.port)], workers=1)

        def session():
            c = h.RawSMTP('127.0.0.1', sf.port, timeout=TIMEOUT)
            self.addCleanup(c.close)
            self.assertEqual(c.read_reply().code, 220)
            for cmd, code in ((b'EHLO client.test\n', 250),
                              (b'MAIL FROM:<a@client.test>\n', 250),
                              (b'RCPT TO:<b@server.test>\n', 250),
                              (b'DATA\n', 354)):
                c.send(cmd)
                self.assertEqual(c.read_reply().code, code, cmd)
            c.send(body + b'.\n')
            self.assertEqual(c.read_reply().code, 250)
            if quit:
                c.send(b'QUIT\n')
                self.assertEqual(c.read_reply().code, 221)
            c.close()
            return self.session_of(sf, c)
        s, spliced = self.spliced_during(sf, session)
        # (the health checks' connections end the script early: only the
        # session's run counts)
        self.assertTrue(done.wait(TIMEOUT), b.errors)
        self.assertEqual(got.get('data'), 'DATA')
        self.assertTrue(got.get('body') == body + b'.\n', 'body differs')
        self.assertEqual(got.get('after'), 0)
        return s, spliced

    def test_bare_lf_data_then_hang_up_is_ok(self):
        """DATA\\n, a bare-LF body ended by .\\n, its 250, then the client
        hangs up without QUIT: ok only if the dialog followed the body as
        a body (read as commands, its lines would be unanswered)."""
        s, spliced = self.bare_lf_session(quit=False)
        self.assertEqual(s['result'], 'ok', s)
        print('bare-LF DATA then hang-up: %s, %s splice(2) calls' % (
            s['result'], spliced))
        if spliced is not None:
            self.assertGreater(spliced, 0, 'the body was not spliced')

    def test_bare_lf_data_and_quit_is_ok(self):
        s, spliced = self.bare_lf_session(quit=True)
        self.assertEqual(s['result'], 'ok', s)
        if spliced is not None:
            self.assertGreater(spliced, 0, 'the body was not spliced')

    # ------------------------------------------------------ real load

    @unittest.skipUnless(shutil.which('smtp-source') or
                         os.path.exists('/usr/sbin/smtp-source'),
                         'smtp-source (postfix) not installed')
    def test_smtp_source_5000_sessions_all_ok(self):
        """smtp-source closes with SO_LINGER 0 right after reading 221:
        every one of its sessions is ok."""
        b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        sf = self.start([('b1', b.port)])
        src = shutil.which('smtp-source') or '/usr/sbin/smtp-source'
        t0 = time.monotonic()
        r = subprocess.run([src, '-s', '20', '-m', '5000', '-f',
                            'a@client.test', '-t', 'b@server.test',
                            '127.0.0.1:%d' % sf.port], capture_output=True,
                           text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        sf.wait_sessions(5000, 120)
        results = {}
        for s in sf.sessions():
            results[s['result']] = results.get(s['result'], 0) + 1
        print('smtp-source -s 20 -m 5000: %.1f s, results %s' % (
            time.monotonic() - t0, results))
        self.assertEqual(results, {'ok': 5000})

    def test_stalled_backend_bounded_and_ended_by_server_timeout(self):
        """The backend stops reading while the client pushes 50 MB: memory
        stays bounded and server_timeout ends the session."""
        b = h.Backend(mode='stall', proxy='v2', name='stall')
        self.addCleanup(b.stop)
        sf = self.start([('stall', b.port)], pool={'server_timeout': '3s'})
        c = self.open_message(sf)
        sent, blocked = h.push_until_blocked(c.sock, 4 << 20)
        base = h.tree_rss_kb(sf.pid)
        more, blocked = h.push_until_blocked(c.sock, 50 << 20)
        grown = h.tree_rss_kb(sf.pid) - base
        self.assertTrue(blocked)
        self.assertLess(grown, 16 * 1024, 'grew by %d KiB' % grown)
        s = self.session_of(sf, c)
        self.assertEqual(s['result'], 'server-timeout', s)
        print('stalled backend: %d MB accepted before blocking, RSS +%d KiB, '
              'ended after %s ms' % ((sent + more) >> 20, grown,
                                     s['duration_ms']))


if __name__ == '__main__':
    h.main()
