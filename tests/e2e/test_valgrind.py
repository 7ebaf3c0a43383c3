# SPDX-License-Identifier: MIT
"""A short end-to-end run of smtpfront under valgrind (memcheck): mails,
a refused connection, a greeting-gate failover, a client that vanishes
mid-DATA, a reload and a stop. Every process (master, workers, health
process; forked children stay under valgrind) must report no error and no
definitely lost block. Skipped in sanitizer builds (valgrind cannot run
them) and where valgrind is not installed."""

import glob
import os
import re
import shutil
import signal
import unittest

import sfharness as h

TIMEOUT = 60
VALGRIND = shutil.which('valgrind')


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipUnless(VALGRIND, 'valgrind not installed')
@unittest.skipIf(os.environ.get('SMTPFRONT_SANITIZED') == '1',
                 'sanitizer build: valgrind cannot run it')
class ValgrindTest(unittest.TestCase):

    def test_short_run_is_clean(self):
        good = h.Backend(mode='normal', proxy='v2', name='good')
        self.addCleanup(good.stop)
        busy = h.Backend(mode='greet-421', proxy='v2', name='busy')
        self.addCleanup(busy.stop)
        port = h.free_port()
        # `first` tries busy, then fails over to good behind the gate.
        cfg = h.make_config_dict(port, [('busy', busy.port),
                                        ('good', good.port)],
                                 pool={'balance': 'first'},
                                 health={'check': 'connect',
                                         'interval': '30s'},
                                 listener={'max_connections': 3})
        logdir = self.enterContext(_TempDir())
        sf = h.Smtpfront(cfg, wrapper=[
            VALGRIND, '--leak-check=full', '--errors-for-leak-kinds=definite',
            '--show-leak-kinds=definite', '--track-fds=no',
            '--log-file=%s/vg.%%p' % logdir])
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready(TIMEOUT)
        for i in range(5):
            s = h.smtp_session('127.0.0.1', port, timeout=TIMEOUT)
            s.ehlo('vg.test')
            s.sendmail('a@vg.test', ['b@server.test'],
                       b'Subject: vg\r\n\r\n' + b'line\r\n' * 2000)
            s.quit()
        # Those five must have ended on smtpfront's side too (under
        # valgrind the close can lag the client's), or the three held
        # below would meet max_connections early.
        sf.wait_sessions(5, TIMEOUT)
        held = [h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT)
                for _ in range(3)]
        for c in held:
            self.assertEqual(c.read_reply().code, 220)
        over = h.RawSMTP('127.0.0.1', port, timeout=TIMEOUT)
        self.assertEqual(over.read_reply().code, 421)
        over.close()
        for c in held[:2]:
            c.close()
        c = held[2]
        c.cmd('EHLO vg.test')
        c.cmd('MAIL FROM:<a@vg.test>')
        c.cmd('RCPT TO:<b@server.test>')
        self.assertEqual(c.cmd('DATA').code, 354)
        c.send('half a body\r\n')
        c.close()
        sf.wait_sessions(9, TIMEOUT)
        mark = sf.mark()
        os.kill(sf.pid, signal.SIGHUP)
        sf.wait_log(r'reload: generation 2 running', TIMEOUT, since=mark)
        s = h.smtp_session('127.0.0.1', port, timeout=TIMEOUT)
        s.quit()
        sf.wait_sessions(10, TIMEOUT)
        results = sorted(x['result'] for x in sf.sessions())
        self.assertEqual(sf.stop(timeout=TIMEOUT), 0)
        logs = glob.glob(os.path.join(logdir, 'vg.*'))
        summary = []
        for path in logs:
            with open(path) as f:
                text = f.read()
            errors = re.search(r'ERROR SUMMARY: (\d+) errors', text)
            lost = re.search(r'definitely lost: ([\d,]+) bytes', text)
            summary.append((os.path.basename(path),
                            errors and int(errors.group(1)),
                            lost and lost.group(1)))
            self.assertIsNotNone(errors, '%s has no summary:\n%s' % (
                path, text[-2000:]))
            self.assertEqual(int(errors.group(1)), 0, text[-6000:])
            self.assertTrue(lost is None or lost.group(1) == '0',
                            text[-6000:])
        print('valgrind: %d processes, (log, errors, definitely lost): %s; '
              'session results %s' % (len(logs), summary, results))
        # master, health processes of generations 1 and 2, and workers.
        self.assertGreaterEqual(len(logs), 5)
        self.assertIn('client-closed', results)
        self.assertIn('overload', results)


class _TempDir:
    def __enter__(self):
        import tempfile
        self.path = tempfile.mkdtemp(prefix='sftest-vg-')
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


if __name__ == '__main__':
    h.main()
