"""bench/sections/echo.py: the echo benchmark (bench/weft_bench_echo.c).

Runs `weft-bench echo` (bench/weft_bench_echo.c), which starts weft-echo
(examples/echo, all workers, and on 1 worker as weft-1w), the C epoll
baseline and the Go peer (bench/echo/) on free 127.0.0.1 ports and drives each with the same load
generator, bench/echo/echo-load, pinned to the last CPU: 50 and 500
connections, 64-byte messages, servers alternating run by run. Quick mode:
0.3 s warm-up + 1 s measured, 1 run (about 15 s in all); --full:
1 s + 5 s and args.runs runs. weft-bench prints the medians and the ratio
weft / best peer (requests/s, > 1: weft serves more); this module turns them
into the table. A missing server is listed, not fatal.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _plot import svg_cdf  # noqa: E402

NAMES = ["echo"]

# weft-1w: weft-echo on 1 worker (weft-bench echo adds it when weft has more),
# shown as http and kv show theirs; not a peer.
IMPLS = ["weft", "c-epoll", "go", "weft-1w"]


def parse(out):
    """({(impl, conns): fields}, {conns: ratio fields}, [missing lines])."""
    figs, ratios, missing = {}, {}, []
    for line in out.splitlines():
        if line.startswith("# echo: ") and " missing: " in line:
            missing.append(line[len("# echo: "):])
            continue
        if not line.startswith("name=echo"):
            continue
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get("name") == "echo":
            figs[(f["impl"], int(f["conns"]))] = {
                "rps": float(f["value"]), "p50_us": float(f["p50_us"]),
                "p99_us": float(f["p99_us"]), "p999_us": float(f["p999_us"]),
                "workers": int(f["workers"]), "runs": int(f["runs"]),
                "cpu_us": float(f.get("cpu_us", -1)),
                "load_cpu_us": float(f.get("load_cpu_us", -1)),
                "load_busy": float(f.get("load_busy", -1)),
                "cdf_us": {float(k): float(v) for k, v in
                           (kv.split(":", 1) for kv in f.get("cdf_us", "").split(",") if ":" in kv)}}
        elif f.get("name") == "echo-ratio":
            ratios[int(f["conns"])] = {"best_peer": f["best_peer"], "ratio": float(f["value"]),
                                       "weft_p99_us": float(f["weft_p99_us"]),
                                       "peer_p99_us": float(f["peer_p99_us"]),
                                       "weft_1w_ratio": float(f.get("weft_1w_value", -1))}
    return figs, ratios, missing


def render(head, rows, md):
    if md:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
               ["| " + " | ".join(r) + " |" for r in rows]
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return ["  ".join(str(x).rjust(w[i]) if i else str(x).ljust(w[i]) for i, x in enumerate(r))
            for r in [head] + rows]


def run(args, build, say):
    exe = os.path.join(build, "bench", "weft-bench")
    if args.full:
        opts, secs = ["--runs", str(args.runs)], 6 * args.runs
    else:
        opts, secs = ["--quick"], 1.3
    cmd = [exe, "echo"] + opts
    if not os.access(exe, os.X_OK):
        msg = f"echo: {exe} not built"
        return {"name": "echo", "text": [msg], "md": [msg], "json": {"error": msg}}
    say("bench: echo (" + " ".join(cmd[1:]) + ")")
    # 2 connection counts x 3 servers x (warm-up + measured) plus start-up.
    limit = 2 * len(IMPLS) * (secs + 2) + 60
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        msg = f"echo: weft-bench echo took longer than {limit:.0f} s"
        return {"name": "echo", "text": [msg], "md": [msg], "json": {"error": msg}}
    figs, ratios, missing = parse(p.stdout)
    head = ["echo", "conns", "req/s", "p50 us", "p99 us", "p99.9 us", "weft/best peer",
            "cpu us/req", "load us/req", "load busy"]
    rows = []
    for conns in sorted({c for _, c in figs}):
        for impl in IMPLS:
            x = figs.get((impl, conns))
            if not x:
                continue
            rat = ""
            if impl == "weft" and conns in ratios:
                r = ratios[conns]
                rat = f"{r['ratio']:.2f} (vs {r['best_peer']})"
            elif impl == "weft-1w" and ratios.get(conns, {}).get("weft_1w_ratio", -1) >= 0:
                r = ratios[conns]
                rat = f"{r['weft_1w_ratio']:.2f} (vs {r['best_peer']})"
            rows.append([impl, str(conns), f"{x['rps']:,.0f}", f"{x['p50_us']:.0f}",
                         f"{x['p99_us']:.0f}", f"{x['p999_us']:.0f}", rat,
                         f"{x['cpu_us']:.2f}" if x["cpu_us"] >= 0 else "-",
                         f"{x['load_cpu_us']:.2f}" if x["load_cpu_us"] >= 0 else "-",
                         f"{100 * x['load_busy']:.0f}%" if x["load_busy"] >= 0 else "-"])
    title = (f"echo: `{' '.join(['weft-bench'] + cmd[1:])}`: servers on 127.0.0.1 against "
             f"echo-load (weft, 1 worker) pinned to the last CPU, 64-byte messages, depth 1; "
             f"medians; weft/best peer > 1: weft serves more. cpu us/req: the server's CPU "
             f"time (all threads, user + system) per request in the measured window; load "
             f"us/req and load busy: the load generator's, per request and as a share of one "
             f"CPU (near 100%: the load, not the server, set the rate).")
    text, md = [title, ""] + render(head, rows, False), ["## echo", "", title, ""] + render(head, rows, True)
    # One latency CDF per connection count (_plot.svg_cdf, as http and kv
    # draw theirs), from the per-percentile medians weft-bench echo prints.
    files = {}
    for conns in sorted({c for _, c in figs}):
        curves = {impl: figs[(impl, conns)]["cdf_us"] for impl in IMPLS
                  if (impl, conns) in figs and figs[(impl, conns)]["cdf_us"]}
        svg = svg_cdf(curves, f"echo, {conns} connections: latency CDF (echo-load, "
                      f"medians per percentile)") if curves else None
        if svg:
            files[f"echo-{conns}-cdf.svg"] = svg
            md += ["", f"![echo latency CDF, {conns} connections](echo-{conns}-cdf.svg)"]
    if missing:
        text.append("echo missing: " + "; ".join(missing))
        md += ["", "Missing: " + "; ".join(missing)]
    if p.returncode or not rows:
        err = (p.stderr or p.stdout).strip()[-300:]
        text.append(f"echo: weft-bench echo exited with {p.returncode}: {err}")
        md += ["", f"weft-bench echo exited with {p.returncode}: {err}"]
    return {"name": "echo", "text": text, "md": md, "files": files,
            "json": {"command": cmd[1:], "figures": {f"{i} {c}": v for (i, c), v in figs.items()},
                     "ratios": ratios, "missing": missing, "exit": p.returncode}}
