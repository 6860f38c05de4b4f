"""examples/common/serverproc.py: run an example server for a checker.

The checkers (examples/http/test_http.py, examples/kv/test_kv.py) start their
server with --port 0 on 127.0.0.1, read the port from its "listening on"
line, and stop it by its PID. This is that part, once.
"""
import contextlib
import os
import re
import select
import signal
import subprocess


def time_scale():
    """The test setup's timeout multiplier (meson.build passes it as
    WEFT_TIMEOUT_MULTIPLIER: asan 3, tsan 5), 1 when run by hand. Every
    bound a checker puts on a wait is multiplied by it, as meson multiplies
    the test's own timeout."""
    try:
        return max(1.0, float(os.environ.get("WEFT_TIMEOUT_MULTIPLIER", "1")))
    except ValueError:
        return 1.0


@contextlib.contextmanager
def serving(argv, check, start_timeout=10, stop_timeout=10):
    """Run argv (a server started with --port 0) and yield the port it
    prints in "listening on 127.0.0.1:PORT", or None (reported through
    check) when no such line comes within start_timeout seconds. On the way
    out, whatever happened: SIGTERM by its PID, up to stop_timeout seconds
    for it to exit (then SIGKILL), check that it exited 0, and print what it
    wrote to stderr after the first line. Both timeouts are multiplied by
    time_scale()."""
    start_timeout *= time_scale()
    stop_timeout *= time_scale()
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
