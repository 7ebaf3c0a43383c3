# SPDX-License-Identifier: MIT
"""sfharness.main(), the exit status every e2e script hands meson: 1 when
a test failed or none ran, 77 (SKIP) when all were skipped, 0 otherwise;
and every test_*.py and postfix_*.py ends through it (unittest.main alone
exits 0 when everything was skipped, which meson shows as OK)."""

import glob
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    'all skipped': (77, '''
        @unittest.skip('not here')
        class T(unittest.TestCase):
            def test_a(self): pass
            def test_b(self): pass
        '''),
    'skipped in setUpClass': (77, '''
        class T(unittest.TestCase):
            @classmethod
            def setUpClass(cls): raise unittest.SkipTest('no root')
            def test_a(self): pass
        '''),
    'one passed, one skipped': (0, '''
        class T(unittest.TestCase):
            def test_a(self): pass
            @unittest.skip('not here')
            def test_b(self): pass
        '''),
    'one failed, the rest skipped': (1, '''
        class T(unittest.TestCase):
            def test_a(self): self.fail('no')
            @unittest.skip('not here')
            def test_b(self): pass
        '''),
    'an error': (1, '''
        class T(unittest.TestCase):
            def test_a(self): raise OSError('boom')
        '''),
    'no test at all': (1, '''
        class T(unittest.TestCase):
            pass
        '''),
}


class MainTest(unittest.TestCase):

    def run_script(self, body):
        with tempfile.NamedTemporaryFile('w', suffix='.py', dir=None,
                                         delete=False) as f:
            f.write('import unittest\nimport sfharness\n')
            f.write(textwrap.dedent(body))
            f.write("\nif __name__ == '__main__':\n    sfharness.main()\n")
        self.addCleanup(os.unlink, f.name)
        env = dict(os.environ, PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE='1')
        return subprocess.run([sys.executable, f.name], env=env,
                              capture_output=True, text=True, timeout=60)

    def test_exit_status(self):
        for name, (want, body) in CASES.items():
            with self.subTest(name):
                r = self.run_script(body)
                self.assertEqual(r.returncode, want, r.stdout + r.stderr)

    def test_every_script_ends_through_main(self):
        scripts = sorted(glob.glob(os.path.join(HERE, 'test_*.py')) +
                         glob.glob(os.path.join(HERE, 'postfix_*.py')))
        self.assertGreater(len(scripts), 10)
        for path in scripts:
            with open(path) as f:
                text = f.read()
            tail = text[text.rfind("if __name__ == '__main__':"):]
            with self.subTest(os.path.basename(path)):
                self.assertRegex(tail, r"^if __name__ == '__main__':\s+"
                                 r"(h|sfharness)\.main\(\)\s*$")
                self.assertNotIn('unittest.main', text)


if __name__ == '__main__':
    unittest.main(verbosity=2)
