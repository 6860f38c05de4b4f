"""bench/sections/_plot.py: SVG drawing shared by the server sections (not a
section itself: load_sections skips names starting with "_")."""
import math


def svg_cdf(curves, title="http: latency CDF (wrk -t1 -c100, medians per percentile)"):
    """Latency CDF: x = latency (log scale, ms), y = percentile on the scale
    latency plots use for tails (HdrHistogram's: evenly spaced 0, 90, 99,
    99.9, 99.99 ...; the maximum drawn at the top); one line per
    implementation, from the per-percentile medians ({name: {pct: us}})."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    W, H, L, R, T, B = 640, 400, 60, 130, 30, 50
    xs = [us for c in curves.values() for us in c.values() if us > 0]
    lo, hi = min(xs), max(xs)
    l0, l1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if l1 == l0:
        l1 += 1

    def X(us):
        return L + (math.log10(max(us, 10 ** l0)) - l0) / (l1 - l0) * (W - L - R)

    pmax = max(p for c in curves.values() for p in c if p < 100) if any(
        p < 100 for c in curves.values() for p in c) else 99.0
    nines = max(2, math.ceil(-math.log10(1 - pmax / 100.0) - 1e-9) + 1)   # top of the scale

    def nine(p):                     # 0 at 0%, 1 at 90%, 2 at 99% ...; max at the top
        return nines if p >= 100 else min(-math.log10(1 - p / 100.0), nines)

    def Y(p):
        return T + (1 - nine(p) / nines) * (H - T - B)

    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="{L}" y="18">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for e in range(l0, l1 + 1):
        x = X(10 ** e)
        label = f"{10 ** e / 1000:g} ms"
        out.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{label}</text>')
    ticks = [0, 50] + [100 - 10 ** (2 - k) for k in range(1, nines)]   # 90, 99, 99.9 ...
    for p in ticks:
        out.append(f'<line x1="{L}" y1="{Y(p):.1f}" x2="{W - R}" y2="{Y(p):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L - 6}" y="{Y(p) + 4:.1f}" text-anchor="end">{p:g}%</text>')
    out.append(f'<text x="{L - 6}" y="{Y(100) + 4:.1f}" text-anchor="end">max</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">latency (log scale)</text>')
    for i, (name, c) in enumerate(sorted(curves.items())):
        pts = " ".join(f"{X(us):.1f},{Y(p):.1f}" for p, us in sorted(c.items()))
        col = colors[i % len(colors)]
        out.append(f'<polyline fill="none" stroke="{col}" stroke-width="2" points="{pts}"/>')
        out.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * i}" fill="{col}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
