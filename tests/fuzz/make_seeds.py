#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpora of the fuzz targets into tests/fuzz/<target>/.

Seeds are small, readable cases: valid headers and configs of every kind
and a few near misses, so that libFuzzer starts next to every branch.
Crash reproducers found later are added by hand (as crash-<what>) and are
never rewritten by this script. Run from anywhere: python3 make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SIG = bytes.fromhex("0d0a0d0a000d0a515549540a")


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def tlv(t, value):
    return bytes([t]) + struct.pack(">H", len(value)) + value


def v2(cmd, fam, block, tlvs=b"", crc=None):
    """A v2 header; crc: None (no CRC TLV), 'good' or 'bad'."""
    body = block + tlvs
    if crc is not None:
        body += tlv(0x03, b"\0\0\0\0")
    hdr = SIG + bytes([0x20 | cmd, fam]) + struct.pack(">H", len(body)) + body
    if crc is not None:
        c = crc32c(hdr) ^ (1 if crc == "bad" else 0)
        hdr = hdr[:-4] + struct.pack(">I", c)
    return hdr


IP4 = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack(">HH", 51234, 25)
IP6 = (bytes.fromhex("20010db8000000000000000000000001")
       + bytes.fromhex("20010db8000000000000000000000002")
       + struct.pack(">HH", 1234, 25))
MAPPED = (bytes.fromhex("00000000000000000000ffffc0000201")
          + bytes.fromhex("20010db8000000000000000000000012")
          + struct.pack(">HH", 40000, 10024))
UNIX = b"/run/lb.sock".ljust(108, b"\0") + b"/run/smtpfront.sock".ljust(108, b"\0")
SSL = tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"mx.example"))
NLB = tlv(0x04, b"\0" * 5) + tlv(0xEA, b"\x01vpce-0123456789abcdef0")
EHLO = b"EHLO client.example\r\n"
FF39 = b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

PROXY = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 25\r\n",
    "v1-tcp4-ehlo": b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 25\r\n" + EHLO,
    "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 25\r\n",
    "v1-tcp6-mapped": b"PROXY TCP6 ::ffff:1.2.3.4 ::ffff:4.3.2.1 123 321\r\n",
    "v1-tcp6-longest": b"PROXY TCP6 " + FF39 + b" " + FF39 + b" 65535 65535\r\n",
    "v1-unknown": b"PROXY UNKNOWN\r\n",
    "v1-unknown-107": b"PROXY UNKNOWN " + FF39 + b" " + FF39 + b" 65535 65535\r\n",
    "v1-unknown-binary": b"PROXY UNKNOWN \x01\xff\"\\\r\n",
    "v1-port0": b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
    "bad-v1-port-65536": b"PROXY TCP4 1.2.3.4 4.3.2.1 123 65536\r\n",
    "bad-v1-leading-zero": b"PROXY TCP4 01.2.3.4 4.3.2.1 0123 321\r\n",
    "bad-v1-double-space": b"PROXY TCP4  1.2.3.4 4.3.2.1 123 321\r\n",
    "bad-v1-no-crlf": b"PROXY UNKNOWN " + FF39 + b" " + FF39 + b" 65535 6553555",
    "bad-v1-lf": b"PROXY TCP4 1.2.3.4 4.3.2.1 123 321\n",
    "bad-v1-tcp4-v6": b"PROXY TCP4 ::ffff:1.2.3.4 4.3.2.1 123 321\r\n",
    "bad-v1-zone": b"PROXY TCP6 fe80::1%eth0 ::1 123 321\r\n",
    "truncated-v1": b"PROXY TCP4 1.2.3.4 4.3.2.1 123 321\r",
    "not-proxy-ehlo": EHLO,
    "not-proxy-tls": bytes.fromhex("160301020001000100"),
    "v2-tcp4": v2(1, 0x11, IP4),
    "v2-tcp4-ehlo": v2(1, 0x11, IP4) + EHLO,
    "v2-tcp6": v2(1, 0x21, IP6),
    "v2-tcp6-mapped": v2(1, 0x21, MAPPED),
    "v2-local": v2(0, 0x00, b""),
    "v2-local-tlv-ehlo": v2(0, 0x00, b"", tlv(0x04, b"\xde\xad\xbe\xef")) + EHLO,
    "v2-local-crc": v2(0, 0x00, b"", crc="good"),
    "v2-unspec": v2(1, 0x00, b"", tlv(0x04, b"")),
    "v2-udp4": v2(1, 0x12, IP4),
    "v2-udp6": v2(1, 0x22, IP6),
    "v2-unix": v2(1, 0x31, UNIX),
    "v2-unix-dgram": v2(1, 0x32, UNIX),
    "v2-alpn-noop": v2(1, 0x11, IP4, tlv(0x01, b"smtp") + tlv(0x04, b"\0\0")),
    "v2-vendor": v2(1, 0x11, IP4, tlv(0xE0, b"\0") + tlv(0xEF, b"\xff")),
    "v2-nlb": v2(1, 0x11, IP4, NLB, crc="good"),
    "v2-haproxy-ssl-crc": v2(1, 0x21, IP6, tlv(0x01, b"smtp") + SSL, crc="good"),
    "v2-max": v2(1, 0x11, IP4, tlv(0x04, b"\0" * (536 - 16 - 12 - 3))),
    "bad-v2-nlb-crc": v2(1, 0x11, IP4, NLB, crc="bad"),
    "bad-v2-tlv-past-end": SIG + bytes([0x21, 0x11, 0, 16]) + IP4 + b"\x01\x00\x02a",
    "bad-v2-ssl-sub": v2(1, 0x11, IP4, tlv(0x20, b"\x01\0\0\0\0\x21\x00\x03A")
                         + tlv(0x04, b"")),
    "bad-v2-family": v2(1, 0x41, IP4),
    "bad-v2-version": SIG + bytes([0x11, 0x11, 0, 12]) + IP4,
    "bad-v2-short-block": SIG + bytes([0x21, 0x21, 0, 12]) + IP4,
    "bad-v2-too-long": SIG + bytes([0x21, 0x11, 0x02, 0x09]),
    "truncated-v2": v2(1, 0x11, IP4)[:20],
}

# The config loader: every key of SPEC.md's example, and near misses.
FULL = """workers: 2
shutdown_timeout: 60s
hostname: mx.example.org
log: {target: syslog, facility: mail, level: info}
control: {socket: /run/smtpfront/control.sock, mode: "0660", group: root}
listeners:
  - name: smtp
    bind: ["0.0.0.0:25", "[::]:25"]
    pool: postfix
    mode: smtp
    max_connections: 10000
    max_connections_per_client: 0
    accept_proxy: false
    trusted_proxies: ["10.0.0.0/8", "2001:db8::/32"]
    proxy_timeout: 5s
    client_timeout: 10m
  - name: smtps
    bind: ["127.0.0.1:465"]
    pool: tls
    mode: tls
pools:
  postfix:
    balance: source
    source_prefix: {ipv4: 24, ipv6: 64}
    proxy_protocol: v2
    connect_timeout: 5s
    greeting_timeout: 30s
    server_timeout: 10m
    retries: 2
    health: {interval: 2s, timeout: 10s, rise: 2, fall: 3, helo: mx.example.org, check: smtp}
    servers:
      - {name: mx1, address: "10.0.0.11:10024", weight: 1, max_connections: 0}
      - {name: mx2, address: "[2001:db8::12]:10024"}
      - {name: spare, address: "10.0.1.5:10024", backup: true}
  tls:
    balance: leastconn
    proxy_protocol: v1
    health: {check: connect}
    servers:
      - name: a
        address: 127.0.0.1:10465
"""
MIN = """listeners:
  - bind: 127.0.0.1:2525
    pool: p
pools:
  p:
    servers:
      - name: s
        address: 127.0.0.1:10025
"""
CONFIG = {
    "full": FULL,
    "minimal": MIN,
    "roundrobin-first": MIN.replace("  p:\n", "  p:\n    balance: first\n    proxy_protocol: none\n"),
    "workers-auto": "workers: auto\n" + MIN,
    "bad-unknown-key": MIN + "nope: 1\n",
    "bad-duplicate-key": MIN + "pools: {}\n",
    "bad-duration": "shutdown_timeout: 5x\n" + MIN,
    "bad-address": MIN.replace("127.0.0.1:10025", '"[::1:10025"'),
    "bad-user": "user: no-such-user-here\ngroup: root\n" + MIN,
    "bad-hostname-address": MIN.replace("127.0.0.1:10025", "mx.example.org:25"),
    "bad-accept-proxy": MIN.replace("    pool: p\n", "    pool: p\n    accept_proxy: true\n    trusted_proxies: [10.0.0.0/33]\n"),
    "bad-syntax": "listeners: [\n",
    "bad-two-documents": MIN + "---\n" + MIN,
    "bad-anchor-alias": "a: &x [1, 2]\nb: *x\n" + MIN,
    "empty": "",
}

REPLY = {
    "greeting": b"220 mx.example.org ESMTP Postfix\r\n",
    "teaser": b"220-mx.example.org ESMTP\r\n220 mx.example.org ESMTP\r\n",
    "ehlo": b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n",
    "busy": b"421 4.3.2 All server ports are busy\r\n",
    "client-limit": b"421 4.7.0 mx.example.org Error: too many connections from 192.0.2.1\r\n",
    "reject": b"554 5.7.1 Service unavailable\r\n",
    "bye": b"221 2.0.0 Bye\r\n",
    "bare-lf": b"220 ok\n",
    "junk-ssh": b"SSH-2.0-OpenSSH_9.2\r\n",
    "bad-mixed-codes": b"250-a\r\n251 b\r\n",
    "bad-long": b"220 " + b"x" * 600 + b"\r\n",
}


def dc(data):
    """fuzz_dialog steps: client bytes (cut to 255-byte steps)."""
    return b"".join(bytes([0, len(data[i:i + 255])]) + data[i:i + 255]
                    for i in range(0, len(data), 255))


def ds(data):
    """fuzz_dialog steps: server bytes."""
    return b"".join(bytes([1, len(data[i:i + 255])]) + data[i:i + 255]
                    for i in range(0, len(data), 255))


def du(n):
    """fuzz_dialog step: n client bytes went by unseen (splice)."""
    return bytes([2]) + struct.pack("<H", n)


GREET = ds(b"220 mx.example.org ESMTP Postfix\r\n")
DIALOG = {
    "plain": b"\x00" + GREET + dc(b"EHLO c\r\nMAIL FROM:<a@b>\r\n"
        b"RCPT TO:<c@d>\r\nDATA\r\n") + ds(b"250-mx\r\n250 PIPELINING\r\n"
        b"250 Ok\r\n250 Ok\r\n354 Go\r\n") + dc(b"hi\r\n..x\r\n.\r\n") +
        ds(b"250 Ok: queued\r\n") + dc(b"QUIT\r\n") + ds(b"221 Bye\r\n"),
    "bare-lf": b"\x00" + GREET + dc(b"EHLO c\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\n"
        b"DATA\n") + ds(b"250 mx\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n") +
        dc(b"a\n.\r\r\n.\n") + ds(b"250 Ok\r\n") + dc(b"QUIT\n"),
    "bdat": b"\x00" + GREET + dc(b"BDAT 1048576 LAST\r\n") + du(65535) +
        dc(b"x" * 100) + ds(b"250 Ok\r\n") + dc(b"bdat 3\r\nabcBDAT 5 X\r\n"
        b"BDAT 2 last \r\nzz") + ds(b"250 a\r\n501 b\r\n250 c\r\n"),
    "spliced-body": b"\x00" + GREET + dc(b"DATA\r\n") + ds(b"354 Go\r\n") +
        du(40000) + du(40000) + ds(b"250 Ok\r\n221 Bye\r\n"),
    "starttls": b"\x00" + GREET + dc(b"STARTTLS\r\n") + ds(b"220 Ready\r\n") +
        dc(b"\x16\x03\x01\x02\x00") + ds(b"\x16\x03\x03"),
    "implicit-tls": b"\x01" + dc(b"\x16\x03\x01") + ds(b"\x16"),
    "long-lines": b"\x00" + GREET + dc(b"RCPT TO:<" + b"r" * 2000 + b">\r\n"
        b"BDAT " + b"0" * 600 + b"3 " + b" " * 300 + b"LAST\r\nabc") +
        ds(b"250 " + b"y" * 300 + b"\r\n250 Ok\r\n"),
    "pipeline-deep": b"\x00" + GREET + dc(b"NOOP\r\n" * 40 + b"QUIT\r\n") +
        ds(b"250 Ok\r\n" * 40 + b"221 Bye\r\n"),
}


def write(target, seeds):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


write("proxy", PROXY)
write("config", CONFIG)
write("reply", REPLY)
write("dialog", DIALOG)
