#!/usr/bin/env python3
"""Checker for weft-kv: test_kv.py PATH-TO-weft-kv

Starts the server on 127.0.0.1 with --port 0 (it prints the port it got) and
checks, with a RESP2 client of its own: PING/ECHO, SET/GET (binary and 1 MiB
values, NX/XX, EX/PX), DEL, INCR (new keys, errors, overflow), MGET, EXPIRE
and TTL (lazy expiry on read, periodic expiry of keys never read again),
arity/unknown-command/syntax errors, 16 and 1,000 pipelined commands answered
in order, inline commands, a request sent one byte at a time, protocol errors
(answered with -ERR, then the connection closes), and 8 threads doing INCR on
one key and SET/GET on their own keys at once (no update lost).

test_kv.py PATH-TO-weft-kv --redis-cli checks the same server through
redis-cli instead, and exits 77 (skipped) when redis-cli is not installed.

Every socket has a timeout and every wait a bound, multiplied by the test
setup's multiplier (WEFT_TIMEOUT_MULTIPLIER, see serverproc.py); a TTL is
checked against the time its own exchange took, never for an exact figure.
The server is stopped by its PID (SIGTERM) and must exit 0. Exits 0 when all
checks pass, 1 otherwise.
"""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from serverproc import serving, time_scale  # noqa: E402

SCALE = time_scale()
SOCK_TIMEOUT = 5 * SCALE
SKIP = 77
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)
    return cond


class Err(str):
    """An error reply (-ERR ...)."""


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=SOCK_TIMEOUT)
        self.s.settimeout(SOCK_TIMEOUT)
        self.buf = b""

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data)

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _more(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return Err(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._more()
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError(f"bad reply line {line!r}")

    def cmd(self, *args):
        self.send_raw(self.encode(*args))
        return self.reply()

    def closed(self):
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def ttl_ok(ttl, secs, since):
    """Whether TTL's answer fits a key given secs seconds to live at or after
    `since` (time.monotonic() before the command that set it): the server
    rounds what is left to the nearest second, and at most the time since
    then has passed. A slow machine widens the range; it cannot fail it."""
    passed = time.monotonic() - since
    return isinstance(ttl, int) and secs - passed - 0.5 <= ttl <= secs


def basic(port):
    c = Client(port)
    check(c.cmd("PING") == "PONG", "PING")
    check(c.cmd("ping", "hi") == b"hi", "PING msg")
    check(c.cmd("ECHO", "x y") == b"x y", "ECHO")
    check(c.cmd("SET", "k", "v") == "OK" and c.cmd("GET", "k") == b"v", "SET/GET")
    check(c.cmd("GET", "missing") is None, "GET of a missing key is nil")
    binv = bytes(range(256)) + b"\r\n\x00end"
    check(c.cmd("SET", b"bin\r\nkey", binv) == "OK" and c.cmd("GET", b"bin\r\nkey") == binv,
          "binary key and value")
    check(c.cmd("SET", "empty", "") == "OK" and c.cmd("GET", "empty") == b"", "empty value")
    big = os.urandom(1 << 20)
    check(c.cmd("SET", "big", big) == "OK" and c.cmd("GET", "big") == big, "1 MiB value")
    check(c.cmd("SET", "k", "w", "NX") is None and c.cmd("GET", "k") == b"v", "SET NX on existing")
    check(c.cmd("SET", "nx", "1", "NX") == "OK", "SET NX on missing")
    check(c.cmd("SET", "xx", "1", "XX") is None and c.cmd("GET", "xx") is None, "SET XX on missing")
    check(c.cmd("SET", "k", "w", "XX") == "OK" and c.cmd("GET", "k") == b"w", "SET XX on existing")
    t0 = time.monotonic()
    ok = c.cmd("SET", "k", "v", "EX", "100") == "OK"
    ttl = c.cmd("TTL", "k")
    check(ok and ttl_ok(ttl, 100, t0), f"SET EX 100 + TTL: {ttl}")
    check(c.cmd("SET", "k", "v") == "OK" and c.cmd("TTL", "k") == -1, "SET clears the TTL")
    check(c.cmd("TTL", "missing") == -2, "TTL of a missing key")
    check(isinstance(c.cmd("SET", "k", "v", "EX", "0"), Err), "SET EX 0 is an error")
    check(isinstance(c.cmd("SET", "k", "v", "EX", "x"), Err), "SET EX x is an error")
    check(isinstance(c.cmd("SET", "k", "v", "NX", "XX"), Err), "SET NX XX is a syntax error")
    check(isinstance(c.cmd("SET", "k", "v", "BOGUS"), Err), "SET BOGUS is a syntax error")

    check(c.cmd("DEL", "k", "nx", "missing") == 2 and c.cmd("GET", "k") is None, "DEL counts")
    check(c.cmd("INCR", "n") == 1 and c.cmd("INCR", "n") == 2, "INCR")
    c.cmd("SET", "n", "-5")
    check(c.cmd("INCR", "n") == -4, "INCR of a negative number")
    c.cmd("SET", "s", "12a")
    r = c.cmd("INCR", "s")
    check(isinstance(r, Err) and "not an integer" in r, f"INCR of a non-integer: {r!r}")
    c.cmd("SET", "s", " 12")
    check(isinstance(c.cmd("INCR", "s"), Err), "INCR of ' 12'")
    c.cmd("SET", "max", str(2**63 - 1))
    r = c.cmd("INCR", "max")
    check(isinstance(r, Err) and "overflow" in r, f"INCR overflow: {r!r}")
    check(c.cmd("GET", "max") == str(2**63 - 1).encode(), "INCR overflow leaves the value")
    check(c.cmd("MGET", "n", "missing", "empty") == [b"-4", None, b""], "MGET")

    check(c.cmd("EXPIRE", "missing", "10") == 0, "EXPIRE of a missing key")
    t0 = time.monotonic()
    ok = c.cmd("EXPIRE", "n", "50") == 1
    ttl = c.cmd("TTL", "n")
    check(ok and ttl_ok(ttl, 50, t0), f"EXPIRE 50 + TTL: {ttl}")
    ok = c.cmd("INCR", "n") == -3
    ttl = c.cmd("TTL", "n")
    check(ok and ttl_ok(ttl, 50, t0), f"INCR keeps the TTL: {ttl}")
    check(isinstance(c.cmd("EXPIRE", "n", "soon"), Err), "EXPIRE non-integer")
    check(c.cmd("EXPIRE", "n", "-1") == 1 and c.cmd("GET", "n") is None, "EXPIRE -1 deletes")
    c.cmd("SET", "short", "v", "PX", "100")
    time.sleep(0.3)
    check(c.cmd("GET", "short") is None and c.cmd("TTL", "short") == -2, "lazy expiry on read")

    for args, what in [(("GET",), "get"), (("GET", "a", "b"), "get"), (("SET", "a"), "set"),
                       (("INCR",), "incr"), (("EXPIRE", "a"), "expire"), (("MGET",), "mget"),
                       (("DEL",), "del")]:
        r = c.cmd(*args)
        check(isinstance(r, Err) and f"wrong number of arguments for '{what}'" in r,
              f"arity of {args}: {r!r}")
    r = c.cmd("FLY", "me")
    check(isinstance(r, Err) and "unknown command 'FLY'" in r, f"unknown command: {r!r}")
    check(c.cmd("PING") == "PONG", "connection still usable after errors")
    c.close()


def periodic_expiry(port):
    """Keys never read again are reclaimed by the expirer (DBSIZE falls)."""
    c = Client(port)
    base = c.cmd("DBSIZE")
    c.send_raw(b"".join(Client.encode("SET", f"tmp:{i}", "v", "PX", "50") for i in range(1000)))
    ok = sum(c.reply() == "OK" for _ in range(1000))
    check(ok == 1000, f"1000 pipelined SET PX: {ok} OK")
    end = time.monotonic() + 5 * SCALE
    n = c.cmd("DBSIZE")
    while n > base and time.monotonic() < end:
        time.sleep(0.1)
        n = c.cmd("DBSIZE")
    check(n == base, f"periodic expiry: DBSIZE {n} after expiry, {base} before")
    c.close()


def pipelining(port):
    c = Client(port)
    cmds = []
    for i in range(16):
        cmds.append(Client.encode("SET", f"p{i}", i) if i % 2 == 0 else Client.encode("GET", f"p{i - 1}"))
    c.send_raw(b"".join(cmds))
    got = [c.reply() for _ in range(16)]
    want = ["OK" if i % 2 == 0 else str(i - 1).encode() for i in range(16)]
    check(got == want, f"16 pipelined commands: {got}")
    c.send_raw(b"".join(Client.encode("INCR", "pipe") for _ in range(1000)))
    got = [c.reply() for _ in range(1000)]
    check(got == list(range(1, 1001)), "1000 pipelined INCR answered in order")
    # inline commands, as typed over telnet
    c.send_raw(b"PING\r\nSET inl  val\r\nGET inl\n\r\n")
    check([c.reply(), c.reply(), c.reply()] == ["PONG", "OK", b"val"], "inline commands")
    # one byte at a time
    for b in Client.encode("ECHO", "slowly"):
        c.send_raw(bytes([b]))
    check(c.reply() == b"slowly", "a request sent byte by byte")
    c.close()


def protocol_errors(port):
    for raw, what in [(b"*abc\r\n", "bad multibulk length"),
                      (b"*1\r\n+PING\r\n", "missing '$'"),
                      (b"*1\r\n$999999999\r\n", "bulk too large"),
                      (b"*99999999\r\n", "too many arguments"),
                      (b"*1\r\n$4\r\nPINGxx", "no CRLF after the bulk"),
                      (b"*1\r\n$" + b"9" * 40 + b"\r\n", "overlong length line")]:
        c = Client(port)
        c.send_raw(b"PING\r\n" + raw)
        first = c.reply()
        r = c.reply()
        check(first == "PONG" and isinstance(r, Err) and r.startswith("ERR Protocol error")
              and c.closed(), f"{what}: {r!r}, then closed")
        c.close()
    c = Client(port)
    c.send_raw(b"X" * 70000)
    r = c.reply()
    check(isinstance(r, Err) and "too big inline" in r and c.closed(), f"long inline: {r!r}")
    c.close()
    c = Client(port)
    c.send_raw(Client.encode("QUIT"))
    check(c.reply() == "OK" and c.closed(), "QUIT closes")
    c.close()


def concurrency(port):
    n_threads, n_ops = 8, 500
    errs = []

    def worker(t):
        try:
            c = Client(port)
            for i in range(n_ops):
                c.cmd("INCR", "shared")
                if c.cmd("SET", f"own:{t}:{i % 20}", f"{t}-{i}") != "OK":
                    errs.append(f"thread {t}: SET failed")
                v = c.cmd("GET", f"own:{t}:{i % 20}")
                if v != f"{t}-{i}".encode():
                    errs.append(f"thread {t}: read {v!r}, wrote {t}-{i}")
            c.close()
        except Exception as e:  # a failed thread is a failed check
            errs.append(f"thread {t}: {e}")

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20 * SCALE)
    check(not any(t.is_alive() for t in ts), "concurrent clients finished")
    check(not errs, f"concurrent SET/GET: {errs[:3]}")
    c = Client(port)
    v = c.cmd("GET", "shared")
    check(v == str(n_threads * n_ops).encode(), f"concurrent INCR: {v!r}, want {n_threads * n_ops}")
    c.close()


def with_redis_cli(port):
    cli = shutil.which("redis-cli")

    def run(*args):
        p = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), *args],
                           capture_output=True, text=True, timeout=10 * SCALE)
        return p.stdout                 # not a tty: raw replies, nil as ""

    check(run("PING") == "PONG\n", "redis-cli PING")
    check(run("SET", "cli", "hello world") == "OK\n", "redis-cli SET")
    check(run("GET", "cli") == "hello world\n", "redis-cli GET")
    check(run("INCR", "clin") == "1\n", "redis-cli INCR")
    r = run("MGET", "cli", "nope")
    check(r == "hello world\n\n", f"redis-cli MGET: {r!r}")
    check(run("DEL", "cli", "clin") == "2\n", "redis-cli DEL")
    r = run("INCRBY", "x", "1")
    check("unknown command" in r, f"redis-cli unknown command: {r!r}")
    # redis-cli's --pipe mode sends a stream of commands and counts replies.
    p = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "--pipe"],
                       input=b"".join(Client.encode("SET", f"cp{i}", i) for i in range(500)),
                       capture_output=True, timeout=10 * SCALE)
    out = p.stdout.decode()
    check(p.returncode == 0 and "errors: 0, replies: 500" in out, f"redis-cli --pipe: {out!r}")


def main():
    args = sys.argv[1:]
    redis_cli = "--redis-cli" in args
    args = [a for a in args if a != "--redis-cli"]
    if len(args) != 1:
        print(__doc__)
        return 2
    steps = (basic, pipelining, protocol_errors, concurrency, periodic_expiry)
    if redis_cli:
        if not shutil.which("redis-cli"):
            print("SKIP: redis-cli is not installed (Debian redis-tools)")
            return SKIP
        steps = (with_redis_cli,)
    with serving([args[0], "--port", "0", "--workers", "2"], check) as port:
        if port is None:
            return 1
        for step in steps:
            try:
                step(port)
            except Exception as e:  # one broken step must not hide the others
                check(False, f"{step.__name__}: {type(e).__name__}: {e}")
    print(f"{len(failures)} failure(s)" if failures else "all kv checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
