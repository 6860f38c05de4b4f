#!/usr/bin/env python3
"""bench/tests/report_test.py: checks of bench/run's report code on made-up
runs (no benchmark is run): interleaved scaling rounds, paired speed-ups,
the plots, and the parsers of the server sections. Exit 0 when all pass.

    report_test.py BENCH_DIR
"""
import os
import sys
import time
from importlib.machinery import SourceFileLoader

BENCH = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__) + "/..")
sys.path.insert(0, os.path.join(BENCH, "sections"))
run = SourceFileLoader("bench_run", os.path.join(BENCH, "run")).load_module()
import echo      # noqa: E402
import servers   # noqa: E402
from _plot import svg_cdf  # noqa: E402

failed = 0


def check(cond, what):
    global failed
    print(("ok   " if cond else "FAIL ") + what)
    failed += not cond


# job_groups: one benchmark's worker counts run in one group, fewest workers first
jobs = [("skynet", 2, ["weft", "go"]), ("yield", 1, ["weft"]), ("skynet", 1, ["weft"])]
groups = run.job_groups(jobs)
check(groups == [[("skynet", 1, ["weft"]), ("skynet", 2, ["weft", "go"])], [("yield", 1, ["weft"])]],
      "job_groups puts 1 and 2 workers of a benchmark together, in worker order")


def r(bench, w, rnd, v, status="ok"):
    return dict(bench=bench, workers=w, impl="weft", run=rnd, value=v, status=status, unit="ms",
                rss_kb=None)


# In round 2 the host ran at half speed for both runs: paired ratios 2.0,
# 2.0, 1.6 -> median 2.0, where the ratio of the medians reads 95/50 = 1.9;
# round 4's 2-worker run failed, so round 4 gives no pair.
runs = [r("fib", 1, 1, 100), r("fib", 2, 1, 50),
        r("fib", 1, 2, 200), r("fib", 2, 2, 100),
        r("fib", 1, 3, 80), r("fib", 2, 3, 50),
        r("fib", 1, 4, 90), r("fib", 2, 4, None, status="timeout")]
sps = sorted(run.paired_speedups(runs, "fib", 2))
check(sps == [1.6, 2.0, 2.0], f"paired_speedups pairs rounds and skips failed ones: {sps}")
summary = run.summarize(runs)
head, rows = run.scale_table(summary, runs, 2)
check(rows and "2.00x (1.60–2.00)" in rows[0][2], f"scale_table shows the paired median and range: {rows}")

svg = run.svg_scaling(runs, 2, [{"ceiling": 1.9}, {}])
check(svg is not None and svg.count("<polyline") == 1 and svg.count("<circle") == 1,
      "svg_scaling draws one curve and the one ceiling measured")

# svg_cdf: one line per implementation, the maximum at the top, empty input -> None
c = svg_cdf({"a": {0.0: 50, 50.0: 100, 99.0: 300, 100.0: 900}, "b": {50.0: 120, 99.9: 800}}, "t")
check(c is not None and c.count("<polyline") == 2 and ">max<" in c and ">99.9%<" in c,
      "svg_cdf draws both curves with 99.9% and max ticks")
check(svg_cdf({"a": {}}) is None, "svg_cdf returns None with no points")

# echo section: the cdf_us field of weft-bench echo
figs, ratios, missing = echo.parse(
    "name=echo impl=weft workers=2 conns=50 value=1000 unit=req/s p50_us=1.0 p99_us=2.0 "
    "p999_us=3.0 runs=3 cdf_us=1:10.5,50:20,100:300\n"
    "name=echo-ratio conns=50 best_peer=c-epoll value=1.10 weft_p99_us=2.0 peer_p99_us=3.0\n"
    "# echo: go missing: go not installed\n")
check(figs[("weft", 50)]["cdf_us"] == {1.0: 10.5, 50.0: 20.0, 100.0: 300.0},
      "echo.parse reads the latency CDF")
check(ratios[50]["ratio"] == 1.10 and missing == ["go missing: go not installed"],
      "echo.parse reads the ratio and the missing peer")
check(figs[("weft", 50)]["cpu_us"] == -1, "echo.parse: no CPU figures means unknown (-1)")
check(ratios[50]["weft_1w_ratio"] == -1, "echo.parse: no weft-1w ratio means unknown (-1)")
_, r1, _ = echo.parse("name=echo-ratio conns=500 best_peer=go value=0.9 weft_p99_us=2.0 "
                      "peer_p99_us=3.0 weft_1w_value=1.05 weft_1w_p99_us=1.5\n")
check(r1[500]["weft_1w_ratio"] == 1.05, "echo.parse reads weft-1w's ratio")
figs, _, _ = echo.parse(
    "name=echo impl=c-epoll workers=2 conns=500 value=900 unit=req/s p50_us=1.0 p99_us=2.0 "
    "p999_us=3.0 runs=3 cpu_us=6.14 load_cpu_us=6.31 load_busy=0.97 cdf_us=1:10.5\n")
x = figs[("c-epoll", 500)]
check(x["cpu_us"] == 6.14 and x["load_cpu_us"] == 6.31 and x["load_busy"] == 0.97,
      "echo.parse reads the server's and the load's CPU per request")

# servers: CPU time of a process tree, and wrk's request count
import subprocess  # noqa: E402
child = subprocess.Popen([sys.executable, "-c", "import sys; x = 0\nfor i in range(3000000): x += i\n"
                          "sys.stdin.read()"], stdin=subprocess.PIPE)
deadline = time.monotonic() + 10
c, cc = servers.tree_cpu_s(os.getpid()), servers.tree_cpu_s(child.pid)
while time.monotonic() < deadline and servers.tree_cpu_s(child.pid) - cc < 0.05:
    time.sleep(0.05)   # bounded: 10 s at most for the child's loop
grew = servers.tree_cpu_s(child.pid) - cc
check(grew >= 0.05 and servers.tree_cpu_s(os.getpid()) - c >= grew,
      "tree_cpu_s counts a child process's CPU time in its parent's tree")
child.communicate(b"", timeout=10)
check(servers.tree_cpu_s(child.pid) is None, "tree_cpu_s of a reaped process is None")
wrk = ("Running 2s test @ http://127.0.0.1:1/\n  1 threads and 100 connections\n"
       "  254880 requests in 2.00s, 30.14MB read\nRequests/sec: 127412.35\npct 99 1100\n")
check(servers.parse_wrk(wrk)[0] == 127412.35 and servers.parse_wrk(wrk)[3] == 254880,
      "parse_wrk reads req/s and the request count")

# kv section: redis-benchmark --csv with its latency columns
got = servers.parse_csv('"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",'
                        '"p95_latency_ms","p99_latency_ms","max_latency_ms"\n'
                        '"GET","1000.00","0.270","0.072","0.255","0.399","0.847","2.151"\n')
check(got["GET"][0] == 1000.0 and got["GET"][1] == 0.847 and
      got["GET"][2] == {0.0: 72.0, 50.0: 255.0, 95.0: 399.0, 99.0: 847.0, 100.0: 2151.0},
      "servers.parse_csv reads rps, p99 and the CDF points")

# Extra figures (EXTRAS): runs of their own, "not reached" when not printed,
# and table rows under their benchmark.
res = dict(bench="park1m", workers=2, impl="go", run=1, status="ok", value=2.5, unit="s",
           rss_kb=2700000, extra={"park1m.rss": (2707.0, "B")})
xs = run.extra_runs(res)
check([(x["bench"], x["status"], x["value"]) for x in xs] ==
      [("park1m.rss", "ok", 2707.0), ("park1m.back", "not reached", None)],
      f"extra_runs: one per EXTRAS name, the missing one not reached: {xs}")
bad = dict(res, status="timeout", extra={})
check([x["status"] for x in run.extra_runs(bad)] == ["timeout", "timeout"],
      "extra_runs of a failed run carry its status")
runs = [res] + xs
for rnd, (v, rss, back) in enumerate([(2.0, 4400.0, 2.1), (2.2, 4450.0, 2.3), (1.8, 4420.0, 1.9)]):
    w = dict(bench="park1m", workers=2, impl="weft", run=rnd + 1, status="ok", value=v, unit="s",
             rss_kb=4300000, extra={"park1m.rss": (rss, "B"), "park1m.back": (back, "s")})
    runs += [w] + run.extra_runs(w)
impls = {"weft": run.Impl("weft", "x"), "go": run.Impl("go", "y")}
head, rows = run.table(run.summarize(runs), [("park1m", 2, ["weft", "go"])], impls, 2)
names = [r[0] for r in rows]
check(names == ["park1m", "park1m.rss", "park1m.back"], f"table: the extras' rows follow: {names}")
back = rows[2]
check(back[3].startswith("2.10 (1.90–2.30)") and "not reached" in back,
      f"table: weft's park1m.back median, go's not reached: {back}")
check(rows[1][head.index("weft/go")].startswith("1.63"),
      f"table: park1m.rss ratio weft/go 4420/2707: {rows[1]}")

print(f"report_test: {'all passed' if not failed else f'{failed} failed'}")
sys.exit(1 if failed else 0)
