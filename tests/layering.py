#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Includes point one way (README "Architecture"): cmd -> core/master ->
# {core/worker, core/health} -> core/ (plumbing) -> {smtp, balancer} ->
# config. Fails, naming the file and line, when a file includes a header
# of a part above its own, or a sibling it must not know.
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# part -> the parts (besides itself) whose headers it may include
ALLOWED = {
    'config': set(),
    'smtp': {'config'},
    'balancer': {'config'},
    'core': {'smtp', 'balancer', 'config'},
    'core/worker': {'core', 'smtp', 'balancer', 'config'},
    'core/health': {'core', 'smtp', 'balancer', 'config'},
    'core/master': {'core/worker', 'core/health', 'core', 'smtp',
                    'balancer', 'config'},
    'cmd': {'core/master', 'core/worker', 'core/health', 'core', 'smtp',
            'balancer', 'config'},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
# A session's phase changes in one place (session.c's session_goto): an
# assignment to a `state` member anywhere else in the worker is a second.
PHASE_SET = re.compile(r'(->|\.)state\s*(=[^=]|\+\+|--|[-+|&]=)')
PHASE_OWNER = 'core/worker/session.c'


def part_of(path):
    d = os.path.dirname(path)
    return d if d in ALLOWED else None


def main():
    bad = []
    checked = 0
    for part in ALLOWED:
        folder = os.path.join(ROOT, part)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(('.c', '.h')):
                continue
            rel = part + '/' + name
            checked += 1
            with open(os.path.join(folder, name)) as f:
                for n, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = part_of(m.group(1))
                    if target is None:
                        bad.append(f'{rel}:{n}: includes "{m.group(1)}", '
                                   'which is in no part')
                    elif target != part and target not in ALLOWED[part]:
                        bad.append(f'{rel}:{n}: {part} must not include '
                                   f'{target} ("{m.group(1)}")')
    phase_bad = []
    folder = os.path.join(ROOT, 'core/worker')
    for name in sorted(os.listdir(folder)):
        rel = 'core/worker/' + name
        if not name.endswith(('.c', '.h')) or rel == PHASE_OWNER:
            continue
        with open(os.path.join(folder, name)) as f:
            for n, line in enumerate(f, 1):
                if PHASE_SET.search(line.split('//')[0]):
                    phase_bad.append(f'{rel}:{n}: assigns a phase; only '
                                     f'{PHASE_OWNER} may')
    for b in bad + phase_bad:
        print(b)
    print(f'layering: {checked} files, {len(bad)} upward includes, '
          f'{len(phase_bad)} phase assignments outside {PHASE_OWNER}')
    return 1 if bad or phase_bad or checked == 0 else 0


if __name__ == '__main__':
    sys.exit(main())
