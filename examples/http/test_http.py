#!/usr/bin/env python3
"""Checker for weft-http: test_http.py PATH-TO-weft-http

Starts the server on 127.0.0.1 with --port 0 (it prints the port it got),
a temporary --root and a 1 s header timeout, then checks: GET / and HEAD /,
keep-alive (many requests on one connection), 16 pipelined requests sent in
one write and answered in order, a static file compared byte for byte
(binary, larger than the socket buffers), 404 and path escapes, 400 for
malformed requests, 414/431/413 for the limits, 405, 505, 501, HTTP/1.0
close, a request body dropped before the next pipelined request, and a slow
client that trickles its head a byte at a time: it must get a 408, not before
the header timeout and while it still trickles, and a closed connection.
Every socket has a timeout and every read a bound in bytes; timeouts scale
with the test setup's multiplier (WEFT_TIMEOUT_MULTIPLIER, see serverproc.py).
The server is stopped by its PID (SIGTERM) and must exit 0. Exits 0 when all
checks pass, 1 otherwise.
"""
import os
import random
import re
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from serverproc import serving, time_scale  # noqa: E402

SCALE = time_scale()
SOCK_TIMEOUT = 5 * SCALE        # any one recv; a server that stops answering fails
MAX_HEAD = 1 << 20              # a response head this long is not ours: stop reading
HEADER_TIMEOUT_MS = 1000        # the server's --header-timeout-ms
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)
    return cond


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=SOCK_TIMEOUT)
    s.settimeout(SOCK_TIMEOUT)
    return s


def read_response(s, buf=b"", head_only=False):
    """One response from s: (status, headers dict, body, rest of buf).
    status None when the connection closed before a full response. Bounded
    by bytes (MAX_HEAD, then Content-Length), each recv by the socket's
    timeout."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            return None, {}, b"", buf
        d = s.recv(65536)
        if not d:
            return None, {}, b"", buf
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.1 (\d{3}) ", lines[0])
    if not m:
        return None, {}, b"", buf
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = 0 if head_only else int(hdrs.get("content-length", "0"))
    while len(buf) < n:
        d = s.recv(max(65536, n - len(buf)))
        if not d:
            return None, hdrs, b"", buf
        buf += d
    return int(m.group(1)), hdrs, buf[:n], buf[n:]


def closed(s):
    """True when the server closed s (EOF within the socket's timeout)."""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def one(port, raw, want_close=True):
    """Send raw on a new connection: (status, headers, body, closed after)."""
    with connect(port) as s:
        s.sendall(raw)
        st, h, body, _ = read_response(s)
        return st, h, body, want_close and closed(s)


REQ = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def run_checks(port, root):
    # GET / and HEAD /
    with connect(port) as s:
        s.sendall(REQ)
        st, h, body, rest = read_response(s)
        check(st == 200 and body == b"hello" and h.get("content-type") == "text/plain"
              and h.get("content-length") == "5", f"GET /: {st} {h} {body!r}")
        # keep-alive: 200 more requests on the same connection
        ok = 0
        for _ in range(200):
            s.sendall(REQ)
            st, h, body, rest = read_response(s, rest)
            ok += st == 200 and body == b"hello"
        check(ok == 200, f"keep-alive: {ok}/200 answered")
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h, body, rest = read_response(s, rest, head_only=True)
        check(st == 200 and h.get("content-length") == "5" and rest == b"",
              f"HEAD /: {st} {h} extra {rest!r}")

    # 16 pipelined requests in one write, answered in order
    with connect(port) as s:
        reqs = []
        for i in range(16):
            path = "/" if i % 2 == 0 else "/small.txt"
            reqs.append(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        s.sendall(b"".join(reqs))
        rest, good = b"", 0
        for i in range(16):
            st, h, body, rest = read_response(s, rest)
            want = b"hello" if i % 2 == 0 else b"small file\n"
            good += st == 200 and body == want
        check(good == 16, f"pipelining: {good}/16 answered in order")

    # static file, byte for byte (3 MB of random bytes)
    data = open(os.path.join(root, "big.bin"), "rb").read()
    with connect(port) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /sub/x%20y.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h, body, rest = read_response(s)
        check(st == 200 and body == data and h.get("content-type") == "application/octet-stream",
              f"static file: status {st}, {len(body)} of {len(data)} bytes, equal {body == data}")
        st, h, body, rest = read_response(s, rest)
        check(st == 200 and body == b"spaced\n", f"percent-decoded path: {st} {body!r}")

    for raw, want, what in [
        (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404, "missing file"),
        (b"GET /../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", 404, "'..' escape"),
        (b"GET /sub/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", 404, "encoded '..' escape"),
        (b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n", 404, "a directory"),
        (b"GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n", 400, "NUL in path"),
    ]:
        st, h, body, _ = one(port, raw, want_close=False)
        check(st == want, f"{what}: {st}, want {want}")

    # malformed and over-limit requests: the status, then the connection closes
    cases = [
        (b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
        (b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400, "double space"),
        (b"GET / HTTP/1.1\nHost: t\n\n", 400, "bare LF"),
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400, "space before colon"),
        (b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n", 400, "obs-fold"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
         "conflicting Content-Length"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400, "negative Content-Length"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", 400, "control character"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "TLS hello"),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "HTTP/2.0"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "chunked"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "long request line"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"v" * 17000 + b"\r\n\r\n", 431, "huge header"),
        (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 70 + b"\r\n", 431, "70 header fields"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413, "2 MB body"),
    ]
    for raw, want, what in cases:
        st, h, body, was_closed = one(port, raw)
        check(st == want and h.get("connection") == "close" and was_closed,
              f"{what}: status {st} (want {want}), connection {h.get('connection')}, "
              f"closed {was_closed}")

    # 405 keeps the connection; the body is dropped before the next request
    with connect(port) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello worldGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h, _, rest = read_response(s)
        check(st == 405 and "GET" in h.get("allow", ""), f"POST: {st} {h}")
        st, h, body, rest = read_response(s, rest)
        check(st == 200 and body == b"hello", f"request after a body: {st} {body!r}")

    # HTTP/1.0: closed after the answer unless it asks for keep-alive
    st, h, body, was_closed = one(port, b"GET / HTTP/1.0\r\n\r\n")
    check(st == 200 and body == b"hello" and was_closed, f"HTTP/1.0: {st} closed {was_closed}")
    with connect(port) as s:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        st1, h, _, rest = read_response(s)
        st2, _, _, rest = read_response(s, rest)
        check(st1 == 200 and st2 == 200 and h.get("connection") == "keep-alive",
              f"HTTP/1.0 keep-alive: {st1} {st2} {h}")
    st, h, body, was_closed = one(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    check(st == 200 and was_closed, f"Connection: close: {st} closed {was_closed}")

    # A request split in single bytes still parses.
    with connect(port) as s:
        for b in REQ:
            s.send(bytes([b]))
        st, _, body, _ = read_response(s)
        check(st == 200 and body == b"hello", f"byte-at-a-time request: {st}")

    # Slow client: part of a head, then one byte every TRICKLE_S. The header
    # timeout runs from the head's first byte, so the 408 must come while the
    # bytes still trickle (a timer that each byte restarted would never fire)
    # and not before the timeout itself. Counted, not timed: the trickle
    # stops after TRICKLE_MAX bytes, many times the timeout's worth, and the
    # one time check is a lower bound, which a slow machine cannot break.
    TRICKLE_S = 0.2
    TRICKLE_MAX = int(10 * SCALE / TRICKLE_S)
    with connect(port) as s:
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        s.settimeout(TRICKLE_S)
        trickled, got = 0, b""
        while b"\r\n\r\n" not in got and len(got) <= MAX_HEAD:
            try:
                d = s.recv(65536)
            except socket.timeout:
                if trickled == TRICKLE_MAX:
                    break
                try:
                    s.sendall(b"a")
                except OSError:         # closed under us: the answer is in
                    s.settimeout(SOCK_TIMEOUT)
                    continue
                trickled += 1
                continue
            if not d:
                break
            got += d
        waited = time.monotonic() - t0
        s.settimeout(SOCK_TIMEOUT)
        st, h, _, _ = read_response(s, got)
        check(st == 408 and trickled < TRICKLE_MAX,
              f"header timeout: status {st} after {trickled} trickled bytes "
              f"({waited:.2f} s), want 408 before {TRICKLE_MAX}")
        check(waited >= HEADER_TIMEOUT_MS / 1000,
              f"header timeout: 408 after {waited:.2f} s, before the {HEADER_TIMEOUT_MS} ms timeout")
        check(closed(s), "header timeout: connection not closed after the 408")

def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as root:
        rnd = random.Random(7)
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(rnd.randbytes(3 * 1024 * 1024))
        with open(os.path.join(root, "small.txt"), "w") as f:
            f.write("small file\n")
        os.mkdir(os.path.join(root, "sub"))
        with open(os.path.join(root, "sub", "x y.txt"), "w") as f:
            f.write("spaced\n")
        argv = [exe, "--port", "0", "--root", root, "--workers", "2",
                "--header-timeout-ms", str(HEADER_TIMEOUT_MS), "--idle-timeout-ms", "5000"]
        with serving(argv, check) as port:
            if port is None:
                return 1
            run_checks(port, root)
    print(f"{len(failures)} failure(s)" if failures else "all http checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
