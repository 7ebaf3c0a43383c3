# SPDX-License-Identifier: MIT
"""Control levels (issue 20), with real uids: whoever reaches the socket
(mode and control.group) may read (status, metrics, deny list); changing
state (drain, enable, disable, reload, upgrade, deny add/del) needs the
admin level: root, or a member of control.admin_group. A refused command
names the level it needs, changes nothing and is logged.

Throwaway users and groups are created with useradd/groupadd and removed
after: needs root (skipped otherwise)."""

import os
import pwd
import shutil
import subprocess
import unittest
import uuid

import sfharness as h

TIMEOUT = 15
CTL = h.SMTPFRONTCTL_BIN


def _tool(name):
    return shutil.which(name) or shutil.which(name, path='/usr/sbin:/sbin')


def _why_skip():
    if os.geteuid() != 0:
        return 'needs root: creates throwaway users and groups'
    for tool in ('useradd', 'userdel', 'groupadd', 'groupdel', 'setpriv'):
        if _tool(tool) is None:
            return '%s is not installed' % tool
    return None


@unittest.skipIf(h.FRONT != 'smtpfront', 'smtpfront only')
@unittest.skipIf(_why_skip() is not None, _why_skip() or '')
class LevelsTest(h.ControlClient, unittest.TestCase):
    ctl_timeout = TIMEOUT

    @classmethod
    def setUpClass(cls):
        tag = uuid.uuid4().hex[:6]
        cls.read_group = 'sfr' + tag
        cls.admin_group = 'sfa' + tag
        cls.reader = 'sfur' + tag
        cls.admin = 'sfua' + tag
        cls.made = []
        try:
            for g in (cls.read_group, cls.admin_group):
                cls._run('groupadd', '-r', g)
                cls.made.append(('groupdel', g))
            # the reader: in the socket's group only; the admin: in both
            # (the socket's mode lets only its group connect)
            for user, groups in ((cls.reader, cls.read_group),
                                 (cls.admin, cls.read_group + ',' +
                                  cls.admin_group)):
                cls._run('useradd', '-r', '-M', '-d', '/nonexistent',
                         '-s', '/usr/sbin/nologin', '-G', groups, user)
                cls.made.insert(0, ('userdel', user))
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for tool, name in cls.made:
            subprocess.run([_tool(tool), name], capture_output=True,
                           timeout=60)
        cls.made = []

    @staticmethod
    def _run(tool, *args):
        r = subprocess.run([_tool(tool)] + list(args), capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError('%s %s: %s' % (tool, ' '.join(args),
                                              r.stderr.strip()))

    def config(self, admin_group=True):
        control = {'mode': '0660', 'group': self.read_group}
        if admin_group:
            control['admin_group'] = self.admin_group
        return h.make_config(self.port, [(self.b.name, self.b.port)],
                             health={'check': 'connect'}, control=control)

    def start(self, admin_group=True):
        self.b = b = h.Backend(mode='normal', proxy='v2', name='b1')
        self.addCleanup(b.stop)
        self.port = h.free_port()
        sf = h.Smtpfront(self.config(admin_group))
        self.addCleanup(sf.__exit__, None, None, None)
        sf.wait_ready()
        # the users reach the socket and a copy of smtpfrontctl
        os.chmod(sf.dir, 0o755)
        self.binary = os.path.join(sf.dir, 'smtpfrontctl')
        shutil.copy(CTL, self.binary)
        os.chmod(self.binary, 0o755)
        return sf

    def as_user(self, sf, user, *args):
        # --init-groups: the account's groups, as a login gets them
        return self.ctl(sf, *args, binary=self.binary, prefix=[
            'setpriv', '--reuid=' + user, '--regid=' +
            str(pwd.getpwnam(user).pw_gid), '--init-groups'])

    def admin_state(self, sf):
        (srv,) = [s for p in self.status(sf)['pools'] for s in p['servers']]
        return srv['admin']

    def test_reader_reads(self):
        sf = self.start()
        r = self.as_user(sf, self.reader, 'status')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('pool pool', r.stdout)
        r = self.as_user(sf, self.reader, 'status', '--json')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.as_user(sf, self.reader, 'metrics')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('smtpfront_sessions_total', r.stdout)
        r = self.as_user(sf, self.reader, 'deny', 'list')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_reader_is_refused_state_changes_with_the_level_named(self):
        sf = self.start()
        for args, what in ((('drain', 'pool/b1'), 'drain'),
                           (('disable', 'pool/b1'), 'disable'),
                           (('enable', 'pool/b1'), 'enable'),
                           (('reload',), 'reload'),
                           (('upgrade',), 'upgrade'),
                           (('deny', 'add', '192.0.2.1'), 'deny add'),
                           (('deny', 'del', '192.0.2.1'), 'deny del')):
            r = self.as_user(sf, self.reader, *args)
            self.assertEqual(r.returncode, 1, (args, r.stdout, r.stderr))
            self.assertEqual(r.stderr, 'smtpfrontctl: "%s" needs the admin '
                             'level (group %s)\n' % (what, self.admin_group))
            sf.wait_log(r'control: refused "%s" to uid %d pid \d+: it needs '
                        r'the admin level' % (what, pwd.getpwnam(
                            self.reader).pw_uid), TIMEOUT)
        # nothing changed
        self.assertEqual(self.admin_state(sf), 'ready')
        self.assertEqual(self.status(sf)['generation'], 1)
        self.assertEqual(self.status(sf)['deny']['entries'], 0)

    def test_admin_changes_state(self):
        sf = self.start()
        r = self.as_user(sf, self.admin, 'drain', 'pool/b1')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, 'ok\n')
        self.assertEqual(self.admin_state(sf), 'drain')
        sf.wait_log(r'control: server pool/b1 is now drain \(uid %d '
                    % pwd.getpwnam(self.admin).pw_uid, TIMEOUT)
        r = self.as_user(sf, self.admin, 'enable', 'pool/b1')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.admin_state(sf), 'ready')
        r = self.as_user(sf, self.admin, 'reload')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.status(sf)['generation'], 2)
        r = self.as_user(sf, self.admin, 'deny', 'add', '192.0.2.1', '1h')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.as_user(sf, self.admin, 'deny', 'del', '192.0.2.1')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_the_admin_group_as_primary_group(self):
        # a process whose gid (not a supplementary group) is the admin group
        sf = self.start()
        r = self.ctl(sf, 'drain', 'pool/b1', binary=self.binary, prefix=[
            'setpriv', '--reuid=' + self.reader, '--regid=' +
            self.admin_group, '--groups=' + self.read_group])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.admin_state(sf), 'drain')

    def test_without_admin_group_only_root_changes_state(self):
        sf = self.start(admin_group=False)
        r = self.as_user(sf, self.admin, 'drain', 'pool/b1')
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr, 'smtpfrontctl: "drain" needs the admin '
                         'level (root; no control.admin_group is set)\n')
        self.assertEqual(self.admin_state(sf), 'ready')
        r = self.ctl(sf, 'drain', 'pool/b1')        # root
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.admin_state(sf), 'drain')

    def test_a_reload_changes_admin_group(self):
        sf = self.start(admin_group=False)
        r = self.as_user(sf, self.admin, 'drain', 'pool/b1')
        self.assertEqual(r.returncode, 1, r.stderr)
        sf.write_config(self.config(admin_group=True))
        r = self.ctl(sf, 'reload')                  # root
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn('warning', r.stderr)
        r = self.as_user(sf, self.admin, 'drain', 'pool/b1')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.admin_state(sf), 'drain')
        r = self.as_user(sf, self.reader, 'enable', 'pool/b1')
        self.assertEqual(r.returncode, 1, r.stderr)


if __name__ == '__main__':
    h.main()
