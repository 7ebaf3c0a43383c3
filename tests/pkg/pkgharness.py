# SPDX-License-Identifier: MIT
"""Small helpers for the packaging tests (stdlib only): commands that show
what they ran when they fail, a daemon whose stderr lines can be awaited,
free ports, and the meson-style exit (77 = skipped)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
E2E_DIR = os.path.join(SOURCE_ROOT, 'tests', 'e2e')


def build_root():
	"""The meson build directory whose binaries the tests use."""
	return os.path.abspath(os.environ.get('SMTPFRONT_BUILD_ROOT',
		os.path.join(SOURCE_ROOT, 'build')))


def built(*relpath):
	path = os.path.join(build_root(), *relpath)
	if not os.access(path, os.X_OK):
		raise unittest.SkipTest('%s is not built (set SMTPFRONT_BUILD_ROOT)' % path)
	return path


def run(cmd, *, check=True, timeout=600, env=None, cwd=None, input=None):
	"""Run cmd, output captured; on failure (check) raise with the output."""
	r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
		text=True, timeout=timeout, env=env, cwd=cwd, input=input,
		stdin=None if input is not None else subprocess.DEVNULL)
	if check and r.returncode != 0:
		raise AssertionError('%s exited %d:\n%s' % (' '.join(cmd), r.returncode,
			r.stdout[-6000:]))
	return r


def free_port(host='127.0.0.1'):
	with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
		s.bind((host, 0))
		return s.getsockname()[1]


def free_privileged_port(host='127.0.0.1'):
	"""A port below 1024 that is free now (root only): so that the test
	needs CAP_NET_BIND_SERVICE, as port 25 does."""
	for port in range(999, 600, -1):
		with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
			s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
			try:
				s.bind((host, port))
			except OSError:
				continue
			return port
	raise AssertionError('no free port below 1024 on ' + host)


class Daemon:
	"""A foreground process in its own session; its stderr lines are
	collected on a thread and can be awaited."""

	def __init__(self, argv, *, env=None, cwd=None, name='daemon', umask=None):
		self.name = name
		self.lines = []
		self.cond = threading.Condition()
		self.eof = False
		pre = (lambda: os.umask(umask)) if umask is not None else None
		self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
			stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd,
			start_new_session=True, preexec_fn=pre)
		self.pid = self.proc.pid
		self._thread = threading.Thread(target=self._read, daemon=True)
		self._thread.start()

	def _read(self):
		for raw in self.proc.stderr:
			line = raw.decode('utf-8', 'replace').rstrip('\n')
			if os.environ.get('SFTEST_VERBOSE'):
				print('[%s] %s' % (self.name, line), flush=True)
			with self.cond:
				self.lines.append(line)
				self.cond.notify_all()
		self.proc.stderr.close()
		with self.cond:
			self.eof = True
			self.cond.notify_all()

	def logs(self):
		with self.cond:
			return list(self.lines)

	def mark(self):
		with self.cond:
			return len(self.lines)

	def wait_log(self, regex, timeout=20, since=0):
		rx = re.compile(regex)
		found = []

		def match():
			for line in self.lines[since:]:
				m = rx.search(line)
				if m:
					found.append(m)
					return True
			return False
		with self.cond:
			self.cond.wait_for(lambda: match() or self.eof, timeout)
		if not found:
			raise AssertionError('%s: no log line /%s/ within %ss (exit %s); log:\n%s'
				% (self.name, regex, timeout, self.proc.poll(),
				'\n'.join(self.logs()[-40:])))
		return found[0]

	def stop(self, sig=signal.SIGTERM, timeout=30, pid=None):
		"""Signal it (or pid, e.g. the daemon under a strace that is this
		process), wait; kill the whole session on timeout. The exit code,
		or None when it had to be killed."""
		rc = None
		if self.proc.poll() is None:
			try:
				os.kill(pid or self.proc.pid, sig)
			except ProcessLookupError:
				pass
		try:
			rc = self.proc.wait(timeout)
		except subprocess.TimeoutExpired:
			rc = None
		try:
			os.killpg(self.pid, signal.SIGKILL)   # no orphaned children
		except (ProcessLookupError, PermissionError):
			pass
		if rc is None:
			self.proc.wait(10)
		self._thread.join(5)
		return rc

	def __enter__(self):
		return self

	def __exit__(self, *exc):
		self.stop(timeout=10 if self.proc.poll() is None else 1)
		return False


def poll_until(fetch, pred, what, timeout=20, interval=0.05):
	deadline = time.monotonic() + timeout
	while True:
		value = fetch()
		if pred(value):
			return value
		if time.monotonic() > deadline:
			raise AssertionError('%s: still not so after %ss; last: %s' % (
				what, timeout, json.dumps(value) if not isinstance(value, str)
				else value))
		time.sleep(interval)


def throwaway_users(test, roles):
	"""Create one user per role (roles: {role: [supplementary groups]}),
	with a name no account has, no home, and remove each at test's cleanup.
	Returns {role: user name}."""
	import uuid
	names = {}
	for role, groups in roles.items():
		name = 'sft%s%s' % (role[:4], uuid.uuid4().hex[:6])
		run(['useradd', '-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin']
			+ (['-G', ','.join(groups)] if groups else []) + [name], timeout=60)
		test.addCleanup(run, ['userdel', name], check=False, timeout=60)
		names[role] = name
	return names


def run_tests():
	"""unittest.main: exit 1 on failure, 77 (meson's SKIP) when every test
	was skipped, else 0."""
	prog = unittest.main(exit=False, verbosity=2)
	r = prog.result
	if r.failures or r.errors or r.unexpectedSuccesses:
		sys.exit(1)
	if r.testsRun and len(r.skipped) == r.testsRun:
		for _, why in r.skipped[:1]:
			print('SKIP:', why)
		sys.exit(77)
	sys.exit(0)
