# SPDX-License-Identifier: MIT
"""Throwaway private Postfix instances for end-to-end tests.

PostfixLab owns one complete Postfix instance in a temp directory (config, queue,
data, maillog) listening on one loopback port with postscreen (or smtpd) and
optionally expecting a PROXY header. It never touches /etc/postfix's instance, and
several labs can run at once on distinct ports. Needs root (postfix -c DIR start).
"""

import contextlib
import errno
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

POSTFIX = shutil.which('postfix') or '/usr/sbin/postfix'
RELAY_DOMAIN = 'test.example'


def have_ipv6_loopback():
	"""True when ::1 can be bound (inet_protocols = all is safe then)."""
	try:
		with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
			s.bind(('::1', 0))
		return True
	except OSError:
		return False


def postfix_available():
	"""Why a lab cannot run here, or None when it can."""
	if os.geteuid() != 0:
		return 'Postfix instances need root (postfix -c DIR start)'
	if not os.access(POSTFIX, os.X_OK):
		return 'postfix is not installed'
	try:
		pwd.getpwnam('postfix')
	except KeyError:
		return 'no postfix user'
	return None


def _pid_alive(pid):
	# PID 1 here may not reap orphans: a zombie master counts as gone.
	try:
		with open('/proc/%d/stat' % pid) as f:
			stat = f.read()
	except OSError:
		return False
	return stat[stat.rindex(')') + 2] not in 'ZX'


def _group_alive(pgid):
	"""True while a live process is in process group pgid (the master's)."""
	for entry in os.listdir('/proc'):
		if not entry.isdigit():
			continue
		try:
			with open('/proc/%s/stat' % entry) as f:
				stat = f.read()
		except OSError:
			continue
		fields = stat[stat.rindex(')') + 2:].split()
		if fields[0] not in 'ZX' and int(fields[2]) == pgid:
			return True
	return False


class PostfixLab:
	"""One private Postfix instance on `listen`:`port`.

	proxy: 'haproxy' to expect a PROXY v1/v2 header on the port, None for plain SMTP.
	postscreen: True puts postscreen on the port (smtpd behind it via "smtpd pass");
	False puts smtpd there directly (then smtpd_upstream_proxy_protocol).
	greet_wait: postscreen_greet_wait (e.g. '2s'); None keeps Postfix's 6 s.
	access_list: CIDRs permitted in postscreen_access_list (no teaser, no greet wait).
	Mail to any user@test.example is accepted from anyone and discarded.
	"""

	def __init__(self, port, *, listen='127.0.0.1', proxy='haproxy', greet_wait=None,
			access_list=(), message_size_limit=None, postscreen=True,
			extra_main=None):
		if proxy not in ('haproxy', None):
			raise ValueError('proxy must be "haproxy" or None')
		self.port = int(port)
		self.listen = listen
		self.proxy = proxy
		self.greet_wait = greet_wait
		self.access_list = list(access_list)
		self.message_size_limit = message_size_limit
		self.postscreen = postscreen
		self.extra_main = dict(extra_main or {})
		self.name = 'postfixlab-%d' % self.port
		self.dir = None
		self.master_pid = None
		self._log_pos = 0
		self._log_text = ''
		self._build()

	# ---- layout -----------------------------------------------------------------

	@property
	def address(self):
		return (self.listen, self.port)

	@property
	def hostport(self):
		"""host:port as written in smtpfront's YAML ([v6]:port for IPv6)."""
		if ':' in self.listen:
			return '[%s]:%d' % (self.listen, self.port)
		return '%s:%d' % (self.listen, self.port)

	@property
	def maillog(self):
		return os.path.join(self.dir, 'maillog')

	def _build(self):
		self.dir = tempfile.mkdtemp(prefix=self.name + '-')
		try:
			self._write_tree()
		except BaseException:
			shutil.rmtree(self.dir, ignore_errors=True)
			raise

	def _write_tree(self):
		# user postfix must traverse every directory above the queue
		os.chmod(self.dir, 0o755)
		self.config_dir = os.path.join(self.dir, 'etc')
		self.queue_dir = os.path.join(self.dir, 'queue')
		self.data_dir = os.path.join(self.dir, 'data')
		os.mkdir(self.config_dir, 0o755)
		os.mkdir(self.queue_dir, 0o755)
		os.mkdir(self.data_dir, 0o700)
		pw = pwd.getpwnam('postfix')
		os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
		ipv6 = have_ipv6_loopback()
		if ':' in self.listen and not ipv6:
			raise OSError(errno.EADDRNOTAVAIL, 'no IPv6 loopback for ' + self.listen)

		self._write('transport', '%s discard:\n' % RELAY_DOMAIN)
		self._write('postscreen_access.cidr',
			''.join('%s permit\n' % c for c in self.access_list))
		main = [
			('compatibility_level', '3.6'),
			('queue_directory', self.queue_dir),
			('data_directory', self.data_dir),
			('syslog_name', self.name),
			('multi_instance_name', self.name),
			('maillog_file', self.maillog),
			# postlogd refuses a maillog_file outside these prefixes
			('maillog_file_prefixes', '/var, /dev/stdout, ' + self.dir),
			('myhostname', 'lab%d.postfixlab.test' % self.port),
			('mydomain', 'postfixlab.test'),
			('inet_interfaces', self.listen),
			# a TCP6 PROXY header needs ipv6 even when the proxy connects over IPv4
			('inet_protocols', 'all' if ipv6 else 'ipv4'),
			('smtpd_peername_lookup', 'no'),
			('smtp_dns_support_level', 'disabled'),
			('mydestination', ''),
			('local_recipient_maps', ''),
			('alias_maps', ''),
			('alias_database', ''),
			('relay_domains', RELAY_DOMAIN),
			('transport_maps', 'texthash:' + os.path.join(self.config_dir, 'transport')),
			# Never 127.0.0.0/8: the proxy connects from loopback, and a proxy address
			# in mynetworks lets every session that reaches Postfix with it (no header,
			# LOCAL) relay anywhere. TEST-NET-1 host: matches nothing here, and keeps
			# mynetworks_style from adding 127.0.0.1 implicitly.
			('mynetworks', '192.0.2.1/32'),
			('smtpd_relay_restrictions', 'permit_mynetworks, reject_unauth_destination'),
			('postscreen_access_list', 'permit_mynetworks, cidr:'
				+ os.path.join(self.config_dir, 'postscreen_access.cidr')),
			# one cache per instance (and per postscreen listener)
			('postscreen_cache_map', 'btree:$data_directory/postscreen_cache'),
			('smtpd_banner', '$myhostname ESMTP postfixlab'),
			('biff', 'no'),
			('append_dot_mydomain', 'no'),
			('readme_directory', 'no'),
			('smtputf8_enable', 'no'),
		]
		if self.message_size_limit is not None:
			main.append(('message_size_limit', str(int(self.message_size_limit))))
		if self.greet_wait is not None:
			main.append(('postscreen_greet_wait', str(self.greet_wait)))
		# extra_main overrides in place: a repeated key makes Postfix warn
		# "overriding earlier entry" in every process's log
		main = [(k, self.extra_main.get(k, v)) for k, v in main]
		main.extend((k, v) for k, v in self.extra_main.items()
			if k not in dict(main))
		self._write('main.cf', ''.join('%s = %s\n' % kv for kv in main))

		host = '[%s]' % self.listen if ':' in self.listen else self.listen
		front = '%s:%d' % (host, self.port)
		if self.postscreen:
			lines = ['%-20s inet  n - n - 1 postscreen' % front]
			if self.proxy:
				lines.append('  -o postscreen_upstream_proxy_protocol=' + self.proxy)
			# postscreen hands sessions to "smtpd", which must not expect a header
			lines.append('smtpd                pass  - - n - - smtpd')
		else:
			lines = ['%-20s inet  n - n - - smtpd' % front]
			if self.proxy:
				lines.append('  -o smtpd_upstream_proxy_protocol=' + self.proxy)
		lines += [
			'pickup     unix  n - n 60 1 pickup',
			'cleanup    unix  n - n - 0 cleanup',
			'qmgr       unix  n - n 300 1 qmgr',
			'rewrite    unix  - - n - - trivial-rewrite',
			'bounce     unix  - - n - 0 bounce',
			'defer      unix  - - n - 0 bounce',
			'trace      unix  - - n - 0 bounce',
			'verify     unix  - - n - 1 verify',
			'flush      unix  n - n 1000? 0 flush',
			'proxymap   unix  - - n - - proxymap',
			'proxywrite unix  - - n - 1 proxymap',
			'smtp       unix  - - n - - smtp',
			'relay      unix  - - n - - smtp',
			'showq      unix  n - n - - showq',
			'error      unix  - - n - - error',
			'retry      unix  - - n - - error',
			'discard    unix  - - n - - discard',
			'local      unix  - n n - - local',
			'virtual    unix  - n n - - virtual',
			'lmtp       unix  - - n - - lmtp',
			'anvil      unix  - - n - 1 anvil',
			'scache     unix  - - n - 1 scache',
			'dnsblog    unix  - - n - 0 dnsblog',
			'tlsproxy   unix  - - n - 0 tlsproxy',
			'postlog    unix-dgram n - n - 1 postlogd',
		]
		self._write('master.cf', '\n'.join(lines) + '\n')

	def _write(self, name, text):
		path = os.path.join(self.config_dir, name)
		with open(path, 'w') as f:
			f.write(text)
		os.chmod(path, 0o644)

	# ---- lifecycle --------------------------------------------------------------

	def _postfix(self, *args, check=True, timeout=60):
		r = subprocess.run([POSTFIX, '-c', self.config_dir] + list(args),
			stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
			stderr=subprocess.STDOUT, text=True, timeout=timeout)
		if check and r.returncode != 0:
			raise RuntimeError('postfix %s failed (%d): %s\n--- maillog ---\n%s' % (
				' '.join(args), r.returncode, r.stdout.strip(), self.log_text()[-4000:]))
		return r

	def check(self):
		"""postfix check: creates the queue tree, fails on fatal problems."""
		return self._postfix('check')

	def _read_master_pid(self):
		try:
			with open(os.path.join(self.queue_dir, 'pid', 'master.pid')) as f:
				return int(f.read().split()[0])
		except (OSError, ValueError, IndexError):
			return None

	def start(self, timeout=30):
		"""Start the instance; return once the master is up and the port listens.

		No probe connection: it would add a CONNECT/HANGUP from 127.0.0.1 to the log.
		"""
		self._postfix('start', timeout=timeout)
		self.master_pid = self._read_master_pid()
		deadline = time.monotonic() + timeout
		# master -w already waited for initialisation: this rarely loops
		while not self._port_listening():
			if self.master_pid is None or not _pid_alive(self.master_pid) \
					or time.monotonic() > deadline:
				self.abort()
				raise RuntimeError('postfix lab on %s is not listening\n%s' % (
					self.hostport, self.log_text()[-3000:]))
			time.sleep(0.05)
		return self

	def _port_listening(self):
		want = ':%04X' % self.port
		for table in ('/proc/net/tcp', '/proc/net/tcp6'):
			try:
				with open(table) as f:
					next(f)
					for line in f:
						fields = line.split()
						# local_address ends in :PORT, st 0A = LISTEN
						if fields[1].endswith(want) and fields[3] == '0A':
							return True
			except OSError:
				pass
		return False

	def _wait_gone(self, pid, timeout):
		# the master first, then its children (they exit once it is gone)
		deadline = time.monotonic() + timeout
		while _pid_alive(pid) or _group_alive(pid):
			if time.monotonic() > deadline:
				return False
			time.sleep(0.05)
		return True

	def stop(self, timeout=15):
		"""postfix stop; wait until the master is gone (kill its group if stuck)."""
		pid = self.master_pid or self._read_master_pid()
		if pid is None or not _pid_alive(pid):
			self.master_pid = None
			return
		self._postfix('stop', check=False, timeout=timeout)
		if not self._wait_gone(pid, timeout):
			self._kill_group(pid)
		self.master_pid = None

	def abort(self):
		"""Kill the whole instance (master and children: one process group) now."""
		pid = self.master_pid or self._read_master_pid()
		if pid is not None and _pid_alive(pid):
			self._kill_group(pid)
		self.master_pid = None

	def _kill_group(self, pid):
		# the master is a session/group leader (setsid): its children share pgid pid
		try:
			os.killpg(pid, signal.SIGKILL)
		except ProcessLookupError:
			pass
		self._wait_gone(pid, 5)

	def cleanup(self):
		if self.dir:
			shutil.rmtree(self.dir, ignore_errors=True)
			self.dir = None

	def __enter__(self):
		try:
			return self.start()
		except BaseException:
			self.abort()
			self.cleanup()
			raise

	def __exit__(self, *exc):
		try:
			self.stop()
		except Exception:
			self.abort()
		finally:
			if os.environ.get('POSTFIXLAB_KEEP'):
				print('postfixlab: kept', self.dir)
			else:
				self.cleanup()
		return False

	# ---- log --------------------------------------------------------------------

	def _read_new(self):
		try:
			with open(self.maillog, 'rb') as f:
				f.seek(self._log_pos)
				chunk = f.read()
		except FileNotFoundError:
			return False
		# only complete lines: postlogd may be mid-write
		end = chunk.rfind(b'\n') + 1
		if end == 0:
			return False
		self._log_pos += end
		self._log_text += chunk[:end].decode('utf-8', 'replace')
		return True

	def log_text(self):
		"""The whole maillog so far (complete lines)."""
		if self.dir:
			self._read_new()
		return self._log_text

	def log_mark(self):
		"""Offset into log_text() to pass as wait_log(since=...)."""
		return len(self.log_text())

	def wait_log(self, regex, timeout=10, since=0):
		"""Wait until `regex` matches a line of the maillog at or after `since`.

		Returns the re.Match (against log_text()); raises AssertionError on timeout.
		"""
		pat = re.compile(regex, re.M) if isinstance(regex, str) else regex
		deadline = time.monotonic() + timeout
		start = since
		while True:
			self._read_new()
			m = pat.search(self._log_text, start)
			if m:
				return m
			# resume from the last complete line: new text only adds lines after it
			start = max(since, self._log_text.rfind('\n', since) + 1)
			if time.monotonic() > deadline:
				raise AssertionError('no %r in %s within %ss; log tail:\n%s' % (
					pat.pattern, self.maillog, timeout, self._log_text[-3000:]))
			time.sleep(0.05)

	def find_log(self, regex, since=0):
		"""Every match of `regex` in the maillog from `since`, without waiting."""
		pat = re.compile(regex, re.M) if isinstance(regex, str) else regex
		return list(pat.finditer(self.log_text(), since))


def send_test_mail(host, port, *, source=None, rcpt='user@' + RELAY_DOMAIN,
		sender='sender@client.test', helo='client.test', timeout=30, body=None):
	"""Send one mail with smtplib; return (code, text, client_port) of DATA's reply.

	source: an address to bind the client to (e.g. '127.0.0.55'). Raises
	smtplib.SMTPException when a step before DATA is refused.
	"""
	src = (source, 0) if source else None
	s = smtplib.SMTP(timeout=timeout, source_address=src)
	try:
		s.connect(host, port)
		client_port = s.sock.getsockname()[1]
		s.ehlo(helo)
		code, text = s.mail(sender)
		if code != 250:
			raise smtplib.SMTPSenderRefused(code, text, sender)
		code, text = s.rcpt(rcpt)
		if code not in (250, 251):
			raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
		if body is None:
			body = ('From: %s\r\nTo: %s\r\nSubject: postfixlab\r\n\r\nhello\r\n'
				% (sender, rcpt))
		code, text = s.data(body)
		try:
			s.quit()
		except smtplib.SMTPException:
			pass
		return code, text.decode('utf-8', 'replace'), client_port
	finally:
		s.close()


@contextlib.contextmanager
def logs_on_failure(fronts, labs):
	"""On any failure inside, print what each smtpfront logged (every line but
	the session lines, then its last 40) and the tail of each Postfix maillog:
	the reason is usually there. fronts, labs: callables giving [(name, obj)]
	as they are when the failure happens."""
	try:
		yield
	except BaseException:
		for name, sf in fronts():
			logs = sf.logs()
			sys.stderr.write('--- smtpfront %s log, all but sessions ---\n%s\n'
				'--- smtpfront %s log (tail) ---\n%s\n' % (name,
				'\n'.join(l for l in logs if 'session client=' not in l), name,
				'\n'.join(logs[-40:])))
		for name, lab in labs():
			sys.stderr.write('--- postfix %s maillog (tail) ---\n%s\n'
				% (name, lab.log_text()[-5000:]))
		raise
