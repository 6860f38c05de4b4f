#!/usr/bin/env python3
"""smoke.py ECHO_LOAD WEFT_ECHO: echo-load against weft-echo for ~2 s.

Starts weft-echo (2 workers) on a free 127.0.0.1 port, waits until it
accepts (at most 10 s), runs echo-load with 20 connections, pipelining depth
4, 0.3 s warm-up and 1.5 s measured, and passes only when echo-load exits 0
and its machine line says requests > 0, mismatches=0 and errors=0. Then sends
SIGTERM to the server's PID and requires it to exit 0 within 10 s (clean
shutdown). The same again, shorter (0.8 s), against weft-echo --hog 5: a
coroutine that never blocks for 5 ms at a time must not stop the echoes nor
the shutdown. Exit 77 (skipped) when weft-echo is not built or io_uring is not
available to it.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time


def fail(msg):
    print("echo-load-smoke: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    load, server = sys.argv[1], sys.argv[2]
    if not os.access(server, os.X_OK):
        print(f"echo-load-smoke: SKIP: {server} not built", file=sys.stderr)
        sys.exit(77)
    one(load, server, [], ["--conns", "20", "--depth", "4", "--size", "100",
                           "--warmup", "0.3", "--seconds", "1.5"], True)
    one(load, server, ["--hog", "5"], ["--conns", "20", "--warmup", "0.2", "--seconds", "0.8"],
        False)
    print("echo-load-smoke: ok")


def one(load, server, server_args, load_args, unreachable):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Its stderr goes to a file, which cannot fill up and block it as an
    # unread pipe could.
    log = tempfile.TemporaryFile(mode="w+")
    srv = subprocess.Popen([server, "--port", str(port), "--workers", "2"] + server_args,
                           stderr=log, text=True)
    try:
        end = time.monotonic() + 10
        while True:
            if srv.poll() is not None:
                log.seek(0)
                err = log.read()
                if "io_uring" in err and srv.returncode != 0:
                    print(f"echo-load-smoke: SKIP: no io_uring: {err.strip()}", file=sys.stderr)
                    sys.exit(77)
                fail(f"weft-echo exited with {srv.returncode}: {err.strip()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    fail("weft-echo did not accept within 10 s")
                time.sleep(0.05)
        r = subprocess.run([load, "--port", str(port), "--label", "weft"] + load_args,
                           capture_output=True, text=True, timeout=40)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        m = re.search(r"^name=echo .*$", r.stdout, re.M)
        if not m:
            fail(f"no machine line from echo-load (exit {r.returncode})")
        f = dict(kv.split("=", 1) for kv in m.group(0).split())
        if int(f["requests"]) <= 0:
            fail("no request answered")
        if f["mismatches"] != "0" or f["errors"] != "0":
            fail(f"mismatches={f['mismatches']} errors={f['errors']}")
        if r.returncode != 0:
            fail(f"echo-load exited with {r.returncode}")
        if unreachable:
            # Unreachable server: a clean error, not a hang or a crash.
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                dead = s.getsockname()[1]
            u = subprocess.run([load, "--port", str(dead), "--conns", "2", "--seconds", "0.1"],
                               capture_output=True, text=True, timeout=20)
            if u.returncode != 1 or "cannot connect" not in u.stderr:
                fail(f"unreachable server: exit {u.returncode}, stderr {u.stderr.strip()!r}")
    finally:
        if srv.poll() is None:
            os.kill(srv.pid, signal.SIGTERM)
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(srv.pid, signal.SIGKILL)
                srv.wait()
                fail("weft-echo ignored SIGTERM for 10 s")
    if srv.returncode != 0:
        fail(f"weft-echo exited with {srv.returncode} after SIGTERM")
    log.close()


if __name__ == "__main__":
    main()
