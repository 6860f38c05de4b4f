"""bench/sections/servers.py: the http and kv server benchmarks.

http: weft-http (examples/http) against Go net/http (bench/peers/go-http, built
here with `go build` in GOPATH mode, caches under the build dir, no network)
and nginx with one worker process (bench/peers/nginx.conf, run as the
current user under a temporary prefix). Every server answers GET / with
200 OK, Content-Type: text/plain, Content-Length: 5, "hello", HTTP/1.1
keep-alive. Load: `taskset -c LAST wrk -t1 -c100 -d5s --latency` (quick mode
-d2s) plus a small Lua script that prints more latency percentiles for the
CDF plot; any non-2xx/3xx response or socket error fails that run.

kv: weft-kv (examples/kv) against redis-server (--save "" --appendonly no,
127.0.0.1). Load: `taskset -c LAST redis-benchmark -t get,set -P 1` and
`-P 16`, 50 clients, keys from 100,000 (-r), -q --csv.

Servers are not pinned (weft and Go use every CPU, nginx and redis one
process); the load generator is pinned to the last CPU, as the echo load is.
Implementations alternate run by run (weft, go, nginx, weft, ...) on servers
started once each; the table gives medians of args.runs runs and the ratio
weft/peer of requests per second (> 1: weft serves more). Every process has
a timeout, servers are stopped by their PID, and a missing tool or peer is
reported in the table, not fatal.
"""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _plot import svg_cdf  # noqa: E402

NAMES = ["http", "kv"]

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)

PCTS = [1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99]
WRK_LUA = """done = function(summary, latency, requests)
  for _, p in ipairs({%s}) do
    io.write(string.format("pct %%g %%d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("pct 100 %%d\\n", latency.max))
end
""" % ", ".join(str(p) for p in PCTS)


def last_cpu():
    try:
        return max(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) - 1


def ncpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on 127.0.0.1:port, ready once it accepts."""

    def __init__(self, name, cmd, port, cwd=None, env=None):
        self.name, self.port = name, port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=cwd, env=env)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{name} did not accept on port {port} within 10 s")

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace").strip()[-300:]

    def stop(self):
        """SIGTERM to its PID, SIGKILL after 5 s."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def tree_cpu_s(pid):
    """CPU time in seconds (user + system) of pid's threads and of every
    process below it, from each thread's /proc/.../schedstat (nanoseconds):
    nginx serves from a child of the process we started. Threads that have
    exited are not counted (our servers keep theirs). None if pid is gone."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError, IndexError):
            if p == pid:
                return None
    return total / 1e9


def cpu_us_per(srv, c0, requests):
    """Microseconds of the server's CPU per request since tree_cpu_s gave c0."""
    c1 = tree_cpu_s(srv.proc.pid)
    return (c1 - c0) * 1e6 / requests if c0 is not None and c1 is not None and requests else None


def http_check(port):
    """The response every http server must give; None or what is wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            buf, end = b"", time.monotonic() + 5
            while (b"\r\n\r\n" not in buf or not buf.endswith(b"hello")) and time.monotonic() < end:
                d = s.recv(4096)
                if not d:
                    break
                buf += d
    except OSError as e:
        return str(e)
    head = buf.split(b"\r\n\r\n")[0].lower()
    if not (buf.startswith(b"HTTP/1.1 200") and b"content-length: 5" in head
            and b"content-type: text/plain" in head and buf.endswith(b"\r\n\r\nhello")):
        return f"unexpected response {buf[:200]!r}"
    return None


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(v, nd=0):
    return "-" if v is None else f"{v:,.{nd}f}"


def render(head, rows, md):
    if md:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                         ["| " + " | ".join(r) + " |" for r in rows])
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(str(x).rjust(w[i]) if i else str(x).ljust(w[i])
                               for i, x in enumerate(r)) for r in [head] + rows)


# ------------------------------------------------------------------ http ---

def go_http(build, say):
    """Build the Go peer; (path, None) or (None, why)."""
    go = shutil.which("go")
    if not go:
        return None, "go not installed (Debian golang-go)"
    out = os.path.join(build, "bench", "go-http", "go-http")
    src = os.path.join(BENCH, "peers", "go-http", "main.go")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return out, None
    os.makedirs(os.path.dirname(out), exist_ok=True)
    gob = os.path.join(build, "bench", "go")
    env = dict(os.environ, GO111MODULE="off", GOFLAGS="", CGO_ENABLED="0",
               GOCACHE=os.path.join(gob, "cache"), GOPATH=os.path.join(gob, "path"))
    say("bench: building go-http peer")
    try:
        r = subprocess.run([go, "build", "-o", out, src], capture_output=True, text=True,
                           timeout=300, env=env)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"go build: {e}"
    if r.returncode:
        return None, "go build: " + (r.stderr or r.stdout).strip()[-200:]
    return out, None


def start_nginx(port, tmp):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not nginx:
        raise RuntimeError("nginx not installed (Debian nginx-light)")
    prefix = os.path.join(tmp, "nginx")
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    with open(os.path.join(BENCH, "peers", "nginx.conf")) as f:
        conf = f.read().replace("@PORT@", str(port))
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return Server("nginx", [nginx, "-p", prefix + "/", "-c", path,
                            "-g", f"pid {prefix}/nginx.pid;"], port)


def parse_wrk(out):
    """(req/s, p99 ms, {pct: us}, requests) from wrk --latency plus the Lua
    lines, or raise with what went wrong."""
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if not m:
        raise RuntimeError("no Requests/sec in wrk output: " + out[-200:])
    n = re.search(r"^\s*(\d+) requests in ", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        raise RuntimeError(f"{bad.group(1)} non-2xx/3xx responses")
    err = re.search(r"Socket errors:.*", out)
    if err:
        raise RuntimeError(err.group(0))
    pcts = {float(p): int(us) for p, us in re.findall(r"^pct ([0-9.]+) (\d+)$", out, re.M)}
    p99 = pcts.get(99.0)
    return (float(m.group(1)), (p99 / 1000.0 if p99 is not None else None), pcts,
            int(n.group(1)) if n else None)


def bench_http(args, build, say, tmp):
    secs = 5 if args.full else 2
    cpu = last_cpu()
    res = {"command": f"taskset -c {cpu} wrk -t1 -c100 -d{secs}s --latency -s pcts.lua URL",
           "impls": {}, "missing": {}}
    wrk = shutil.which("wrk")
    if not wrk:
        res["missing"]["wrk"] = "wrk not installed (Debian wrk)"
        return res
    lua = os.path.join(tmp, "pcts.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    servers = {}
    weft = os.path.join(build, "examples", "http", "weft-http")

    def start_weft(workers):
        def start(p):
            if not os.access(weft, os.X_OK):
                raise RuntimeError(f"{weft} not built")
            return Server("weft-http", [weft, "--port", str(p), "--workers", str(workers)], p)
        return start

    specs = [("weft", start_weft(ncpus())), ("weft-1w", start_weft(1))]
    gopath, why = go_http(build, say)
    if gopath:
        specs.append(("go", lambda p: Server("go-http", [gopath, "--port", str(p)], p)))
    else:
        res["missing"]["go"] = why
    specs.append(("nginx", lambda p: start_nginx(p, tmp)))
    try:
        for name, start in specs:
            try:
                srv = start(free_port())
                bad = http_check(srv.port)
                if bad:
                    srv.stop()
                    raise RuntimeError(bad)
                servers[name] = srv
            except (RuntimeError, OSError) as e:
                res["missing"][name] = str(e)
        runs = {n: [] for n in servers}
        for r in range(args.runs):
            for name, srv in servers.items():
                cmd = ["taskset", "-c", str(cpu), wrk, "-t1", "-c100", f"-d{secs}s", "--latency",
                       "-s", lua, f"http://127.0.0.1:{srv.port}/"]
                say(f"bench: http {name} run {r + 1}/{args.runs}")
                try:
                    c0 = tree_cpu_s(srv.proc.pid)
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 20)
                    rps, p99, pcts, nreq = parse_wrk(p.stdout)
                    runs[name].append({"rps": rps, "p99_ms": p99, "pcts_us": pcts,
                                       "cpu_us": cpu_us_per(srv, c0, nreq)})
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    runs[name].append({"error": str(e)})
        for name, rs in runs.items():
            ok = [x for x in rs if "rps" in x]
            pct_med = {}
            for p in PCTS + [100]:
                v = [x["pcts_us"][float(p)] for x in ok if float(p) in x["pcts_us"]]
                if v:
                    pct_med[float(p)] = median(v)
            res["impls"][name] = {
                "runs": rs, "n": len(ok),
                "rps": median([x["rps"] for x in ok]),
                "p99_ms": median([x["p99_ms"] for x in ok if x["p99_ms"] is not None]),
                "rps_min": min([x["rps"] for x in ok], default=None),
                "rps_max": max([x["rps"] for x in ok], default=None),
                "pcts_us": pct_med,
                "cpu_us": median([x["cpu_us"] for x in ok if x["cpu_us"] is not None]),
                "errors": [x["error"] for x in rs if "error" in x],
            }
    finally:
        for srv in servers.values():
            srv.stop()
    return res


# -------------------------------------------------------------------- kv ---

# redis-benchmark --csv columns after test and rps: avg, min, p50, p95, p99,
# max latency (ms). The CDF points: min as 0%, max as 100%.
CSV_PCTS = {3: 0.0, 4: 50.0, 5: 95.0, 6: 99.0, 7: 100.0}


def parse_csv(out):
    """{TEST: (rps, p99 ms, {percentile: µs})} from redis-benchmark --csv."""
    got = {}
    for line in out.splitlines():
        f = [x.strip('"') for x in line.strip().split(",")]
        if len(f) >= 7 and f[0] in ("GET", "SET"):
            try:
                cdf = {p: float(f[i]) * 1000 for i, p in CSV_PCTS.items() if i < len(f)}
                got[f[0]] = (float(f[1]), float(f[6]), cdf)
            except ValueError:
                pass
    return got


def bench_kv(args, build, say, tmp):
    cpu = last_cpu()
    n = {1: 200000 if args.full else 10000, 16: 1000000 if args.full else 100000}
    res = {"command": f"taskset -c {cpu} redis-benchmark -h 127.0.0.1 -p PORT -t get,set "
                      f"-n N -P K -c 50 -r 100000 -q --csv (N: {n[1]:,} at -P 1, "
                      f"{n[16]:,} at -P 16)",
           "impls": {}, "missing": {}}
    rb = shutil.which("redis-benchmark")
    if not rb:
        res["missing"]["redis-benchmark"] = "redis-benchmark not installed (Debian redis-tools)"
        return res
    servers = {}
    weft = os.path.join(build, "examples", "kv", "weft-kv")
    for name, workers in (("weft", ncpus()), ("weft-1w", 1)):
        try:
            p = free_port()
            if not os.access(weft, os.X_OK):
                raise RuntimeError(f"{weft} not built")
            servers[name] = Server("weft-kv", [weft, "--port", str(p), "--workers", str(workers)], p)
        except (RuntimeError, OSError) as e:
            res["missing"][name] = str(e)
    rs = shutil.which("redis-server")
    if rs:
        try:
            p = free_port()
            servers["redis"] = Server("redis-server", [rs, "--save", "", "--appendonly", "no",
                                                       "--port", str(p), "--bind", "127.0.0.1",
                                                       "--daemonize", "no"], p, cwd=tmp)
        except (RuntimeError, OSError) as e:
            res["missing"]["redis"] = str(e)
    else:
        res["missing"]["redis"] = "redis-server not installed (Debian redis-server)"
    try:
        runs = {name: [] for name in servers}
        for r in range(args.runs):
            for name, srv in servers.items():
                one = {}
                for pipe in (1, 16):
                    cmd = ["taskset", "-c", str(cpu), rb, "-h", "127.0.0.1", "-p", str(srv.port),
                           "-t", "get,set", "-n", str(n[pipe]), "-P", str(pipe), "-c", "50",
                           "-r", "100000", "-q", "--csv"]
                    say(f"bench: kv {name} -P {pipe} run {r + 1}/{args.runs}")
                    try:
                        c0 = tree_cpu_s(srv.proc.pid)
                        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                        got = parse_csv(out.stdout)
                        if set(got) != {"GET", "SET"}:
                            raise RuntimeError("no GET/SET figures: " + (out.stdout + out.stderr)[-200:])
                        for t, (rps, p99, cdf) in got.items():
                            one[f"{t} P{pipe}"] = {"rps": rps, "p99_ms": p99, "cdf_us": cdf}
                        # GET and SET ran n requests each in this invocation
                        one[f"cpu P{pipe}"] = cpu_us_per(srv, c0, 2 * n[pipe])
                    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                        one[f"error P{pipe}"] = str(e)
                runs[name].append(one)
        for name, rl in runs.items():
            figs = {}
            for key in ("GET P1", "SET P1", "GET P16", "SET P16"):
                v = [x[key] for x in rl if key in x]
                pcts = set.intersection(*[set(x["cdf_us"]) for x in v]) if v else set()
                figs[key] = {"rps": median([x["rps"] for x in v]),
                             "p99_ms": median([x["p99_ms"] for x in v]), "n": len(v),
                             "cdf_us": {p: median([x["cdf_us"][p] for x in v]) for p in sorted(pcts)}}
            cpu = {f"P{pipe}": median([x[f"cpu P{pipe}"] for x in rl
                                        if x.get(f"cpu P{pipe}") is not None])
                   for pipe in (1, 16)}
            res["impls"][name] = {"runs": rl, "figures": figs, "cpu_us": cpu,
                                  "errors": [v for x in rl for k, v in x.items() if k.startswith("error")]}
    finally:
        for srv in servers.values():
            srv.stop()
    return res


# ------------------------------------------------------------------ report ---

def run(args, build, say):
    want = (lambda n: not args.only or n in args.only)
    text, md, js, files = [], [], {}, {}
    with tempfile.TemporaryDirectory(prefix="weft-servers-") as tmp:
        if want("http"):
            h = bench_http(args, build, say, tmp)
            js["http"] = h
            w = h["impls"].get("weft", {})
            head = ["http", "req/s median", "min-max", "p99 ms", "weft/peer", "weft-1w/peer",
                    "cpu us/req", "runs"]
            rows = []
            w1 = h["impls"].get("weft-1w", {})
            for name in ("weft", "weft-1w", "go", "nginx"):
                x = h["impls"].get(name)
                if not x:
                    continue
                rat = []
                for ref in (w, w1):
                    ok = ref.get("rps") and x.get("rps") and name in ("go", "nginx")
                    rat.append(f"{ref['rps'] / x['rps']:.2f}" if ok else "-")
                rows.append([name, fmt(x["rps"]), f"{fmt(x['rps_min'])}-{fmt(x['rps_max'])}",
                             fmt(x["p99_ms"], 2)] + rat + [fmt(x.get("cpu_us"), 2)] +
                            [f"{x['n']}" + (f" ({len(x['errors'])} failed: {x['errors'][0]})"
                                            if x["errors"] else "")])
            title = (f"http: {h['command']}; req/s, median of {args.runs} run(s); weft: all "
                     f"{ncpus()} workers, weft-1w: 1 worker (nginx runs 1 worker process, Go "
                     f"all CPUs); weft/peer > 1: weft serves more. cpu us/req: the server's CPU "
                     f"time (every thread and child process) per request wrk counted.")
            text += [title, "", render(head, rows, False)]
            md += ["## http", "", title, "", render(head, rows, True)]
            if h["missing"]:
                miss = "; ".join(f"{k}: {v}" for k, v in h["missing"].items())
                text.append("http missing: " + miss)
                md += ["", "Missing: " + miss]
            svg = svg_cdf({n: x["pcts_us"] for n, x in h["impls"].items()})
            if svg:
                files["http-cdf.svg"] = svg
                md += ["", "![http latency CDF](http-cdf.svg)"]
        if want("kv"):
            k = bench_kv(args, build, say, tmp)
            js["kv"] = k
            head = ["kv", "GET P1", "SET P1", "GET P16", "SET P16", "p99 ms GET P1/P16",
                    "cpu us/req P1/P16"]
            rows = []
            for name in ("weft", "weft-1w", "redis"):
                x = k["impls"].get(name)
                if not x:
                    continue
                f = x["figures"]
                rows.append([name] + [fmt(f[c]["rps"]) for c in ("GET P1", "SET P1", "GET P16", "SET P16")]
                            + [f"{fmt(f['GET P1']['p99_ms'], 2)}/{fmt(f['GET P16']['p99_ms'], 2)}",
                               f"{fmt(x['cpu_us']['P1'], 2)}/{fmt(x['cpu_us']['P16'], 2)}"])
            red = k["impls"].get("redis", {}).get("figures")
            for wname in ("weft", "weft-1w"):
                wf = k["impls"].get(wname, {}).get("figures")
                if red and wf:
                    rat = []
                    for c in ("GET P1", "SET P1", "GET P16", "SET P16"):
                        a, b = wf[c]["rps"], red[c]["rps"]
                        rat.append(f"{a / b:.2f}" if a and b else "-")
                    rows.append([f"{wname}/redis"] + rat + ["", ""])
            for name in ("weft", "weft-1w", "redis"):
                x = k["impls"].get(name)
                if x and x["errors"]:
                    rows.append([f"{name} errors", "; ".join(x["errors"])[:120], "", "", "", "", ""])
            title = (f"kv: {k['command']}; req/s, median of {args.runs} run(s); "
                     f"weft (all {ncpus()} workers) and weft-1w (1 worker, as redis has one thread); "
                     f"weft/redis > 1: weft serves more. cpu us/req: the server's CPU time per "
                     f"request over each redis-benchmark invocation (GET and SET, connections "
                     f"included).")
            text += ["", title, "", render(head, rows, False)]
            md += ["", "## kv", "", title, "", render(head, rows, True)]
            if k["missing"]:
                miss = "; ".join(f"{a}: {b}" for a, b in k["missing"].items())
                text.append("kv missing: " + miss)
                md += ["", "Missing: " + miss]
            for key in ("GET P1", "GET P16"):
                svg = svg_cdf({n: x["figures"][key]["cdf_us"] for n, x in k["impls"].items()
                               if x["figures"][key]["n"]},
                              f"kv {key}: latency CDF (redis-benchmark: min, p50, p95, p99, max; "
                              f"medians)")
                if svg:
                    fname = f"kv-{key.replace(' ', '-').lower()}-cdf.svg"
                    files[fname] = svg
                    md += ["", f"![kv {key} latency CDF]({fname})"]
    if not text:
        return None
    return {"name": "servers", "text": text, "md": md, "json": js, "files": files}
