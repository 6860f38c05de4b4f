"""examples/common/serverproc.py: run an example server for a checker.

The checkers (examples/http/test_http.py, examples/kv/test_kv.py) start their
server with --port 0 on 127.0.0.1, read the port from its "listening on"
line, and stop it by its PID. This is that part, once.
"""
import contextlib
import re
import select
import signal
import subprocess


@contextlib.contextmanager
def serving(argv, check, start_timeout=10, stop_timeout=10):
    """Run argv (a server started with --port 0) and yield the port it
    prints in "listening on 127.0.0.1:PORT", or None (reported through
    check) when no such line comes within start_timeout seconds. On the way
    out, whatever happened: SIGTERM by its PID, up to stop_timeout seconds
    for it to exit (then SIGKILL), check that it exited 0, and print what it
    wrote to stderr after the first line."""
    srv = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        r, _, _ = select.select([srv.stderr], [], [], start_timeout)
        line = srv.stderr.readline() if r else ""
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        check(m is not None, f"server did not start: {line!r}")
        yield int(m.group(1)) if m else None
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            rc = srv.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            srv.kill()
            rc = srv.wait()
        check(rc == 0, f"server exit status {rc} after SIGTERM")
        err = srv.stderr.read()
        if err.strip():
            print(err)
