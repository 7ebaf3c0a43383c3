# SPDX-License-Identifier: MIT
"""Read packaging/systemd/smtpfront.service the way the tests need it.

Without systemd as PID 1 (CI), the tests run smtpfront the way the unit
would: the same ExecStart argv, LimitNOFILE (prlimit), the capability
bounding set and no_new_privs (setpriv), and UMask. They also check a
strace of the daemon against the unit's SystemCallFilter and
RestrictAddressFamilies, with the group lists of systemd-analyze.
"""

import os
import re
import resource
import shlex
import shutil
import subprocess

SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
UNIT_SOURCE = os.environ.get('SMTPFRONT_UNIT') or os.path.join(
	SOURCE_ROOT, 'packaging', 'systemd', 'smtpfront.service')


def parse(path=UNIT_SOURCE):
	"""{section: {key: [values in order]}}; continuation lines joined."""
	out, section = {}, None
	with open(path) as f:
		text = f.read().replace('\\\n', ' ')
	for line in text.splitlines():
		line = line.strip()
		if not line or line[0] in '#;':
			continue
		if line.startswith('[') and line.endswith(']'):
			section = out.setdefault(line[1:-1], {})
			continue
		key, _, value = line.partition('=')
		section.setdefault(key.strip(), []).append(value.strip())
	return out


def service(unit, key, default=None):
	"""The last value of [Service] key (what systemd uses), or default."""
	values = unit.get('Service', {}).get(key)
	return values[-1] if values else default


def exec_start(unit):
	"""ExecStart's argv (prefixes like '-' or '@' are not used here)."""
	argv = shlex.split(service(unit, 'ExecStart'))
	if argv[0][0] in '-@:+!':
		raise ValueError('ExecStart prefix not handled: ' + argv[0])
	return argv


def capabilities(unit):
	"""CapabilityBoundingSet as lower-case names without CAP_."""
	caps = []
	for v in unit['Service'].get('CapabilityBoundingSet', []):
		if v.startswith('~'):
			raise ValueError('inverted CapabilityBoundingSet not handled')
		caps += [c.lower().replace('cap_', '', 1) for c in v.split()]
	return caps


def sandbox_argv(unit):
	"""Commands that put the next argv under the unit's LimitNOFILE,
	capability bounding set and NoNewPrivileges, as systemd would."""
	argv = []
	limit = service(unit, 'LimitNOFILE')
	if limit:
		soft, _, hard = limit.partition(':')
		hard = hard or soft
		prlimit = shutil.which('prlimit') or 'prlimit'
		if subprocess.run([prlimit, '--nofile=%s:%s' % (soft, hard), 'true'],
				stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
			# a container without CAP_SYS_RESOURCE cannot raise the hard
			# limit: keep the one it has (systemd could)
			cur = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
			print('note: cannot raise RLIMIT_NOFILE to %s here; using %d'
				% (hard, cur))
			soft = hard = str(min(int(hard), cur))
		argv += [prlimit, '--nofile=%s:%s' % (soft, hard), '--']
	setpriv = [shutil.which('setpriv') or 'setpriv']
	if 'CapabilityBoundingSet' in unit['Service']:
		caps = capabilities(unit)
		setpriv += ['--bounding-set', ','.join(['-all'] + ['+' + c for c in caps])]
	if service(unit, 'NoNewPrivileges', 'no') in ('yes', 'true', '1', 'on'):
		setpriv += ['--no-new-privs']
	if len(setpriv) > 1:
		argv += setpriv + ['--']
	return argv


def umask(unit):
	return int(service(unit, 'UMask', '0022'), 8)


# ---------------------------------------------------------------- syscalls

def syscall_groups():
	"""{'@group': [members]} from `systemd-analyze syscall-filter`."""
	r = subprocess.run(['systemd-analyze', 'syscall-filter'], stdout=subprocess.PIPE,
		stderr=subprocess.DEVNULL, text=True, timeout=60, check=True)
	groups, cur = {}, None
	for line in r.stdout.splitlines():
		if line.startswith('@'):
			cur = groups.setdefault(line.split()[0], [])
		elif cur is not None and line.strip() and not line.strip().startswith('#'):
			cur.append(line.strip())
	return groups


def allowed_syscalls(unit, groups):
	"""The set SystemCallFilter= allows (allow lists only)."""
	def expand(name, seen):
		if not name.startswith('@'):
			return {name}
		if name in seen:
			return set()
		seen.add(name)
		out = set()
		for m in groups.get(name, []):
			out |= expand(m, seen)
		return out
	allowed, denied = None, set()
	for v in unit['Service'].get('SystemCallFilter', []):
		if v.startswith('~'):
			for n in v[1:].split():
				denied |= expand(n, set())
		else:
			allowed = allowed or set()
			for n in v.split():
				allowed |= expand(n, set())
	if allowed is None:
		return None
	return allowed - denied


TRACE_RE = re.compile(r'^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()')


def read_trace(path, exe):
	"""(syscall names, socket families, [lines]) of the strace -f output
	from the exec of `exe` on (what prlimit/setpriv did before is theirs)."""
	with open(path, errors='replace') as f:
		lines = f.read().splitlines()
	start = None
	for i, line in enumerate(lines):
		if re.search(r'\bexecve\("%s",.*\) = 0' % re.escape(exe), line):
			start = i + 1
			break
	if start is None:
		raise AssertionError('no successful execve of %s in %s' % (exe, path))
	names, families = set(), set()
	for line in lines[start:]:
		m = TRACE_RE.match(line)
		if not m:
			continue
		names.add(m.group(2) or m.group(3))
		fam = re.search(r'\bsocket\((AF_\w+)', line)
		if fam:
			families.add(fam.group(1))
	return names, families, lines[start:]
