#!/usr/bin/env python3
"""benches/soak/soak.sh's samples → docs/soak.csv, docs/soak.png (gnuplot) and
the soak section of docs/SECURITY.md (between its soak markers).

  report.py <work dir> <duration s> <repository root>

Exits 1 when growth after warm-up exceeds the bound soak.sh states."""
import csv
import datetime
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

WARM_UP = 60
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def result(path):
    """`RESULT k=v …` from a driver's output as a dict (empty when absent)."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("RESULT "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    return {}


def h2load_summary(path):
    text = Path(path).read_text(errors="replace")
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", text)
    return {"total": m[1], "done": m[2], "succeeded": m[3], "failed": m[4]} if m else {}


def main():
    work, duration, root = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    rows = list(csv.DictReader(open(work / "soak.csv")))
    num = lambda r, k: float(r[k])
    after = [r for r in rows if WARM_UP <= num(r, "seconds") <= WARM_UP + 60]
    last = [r for r in rows if num(r, "seconds") >= duration - 60]
    if not after or not last:
        sys.exit(f"soak: no samples between {WARM_UP} and {WARM_UP + 60} s to compare; run DURATION >= {WARM_UP}")
    mean = lambda rs, k: statistics.mean(num(r, k) for r in rs)
    checks = []
    for key, rel, add, unit in [("rss_mib", 0.05, 1.0, " MiB"), ("fds", 0.10, 2, ""), ("tasks", 0.10, 2, "")]:
        early, late = mean(after, key), mean(last, key)
        bound = early * (1 + rel) + add
        checks.append((key, early, late, bound, late <= bound, unit))
    ok = all(c[4] for c in checks)

    docs = root / "docs"
    shutil.copy(work / "soak.csv", docs / "soak.csv")
    plot = f"""
set terminal pngcairo size 900,720 font ",10"
set output "{docs / 'soak.png'}"
set datafile separator ","
set key off
set grid
set xlabel "minutes"
set multiplot layout 3,1 title "tokengate soak: {duration // 60} min of mixed traffic (samples every 10 s)"
set ylabel "RSS (MiB)"
set yrange [0:*]
plot "{work / 'soak.csv'}" using ($1/60):2 every ::1 with linespoints pt 7 ps 0.4
set ylabel "open descriptors"
plot "{work / 'soak.csv'}" using ($1/60):3 every ::1 with linespoints pt 7 ps 0.4
set ylabel "tasks"
plot "{work / 'soak.csv'}" using ($1/60):4 every ::1 with linespoints pt 7 ps 0.4
unset multiplot
"""
    subprocess.run(["gnuplot"], input=plot.encode(), check=True)

    wrk, tunnels, h2 = result(work / "wrk.out"), result(work / "tunnels.out"), h2load_summary(work / "h2load.out")
    final = rows[-1]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines = [
        BEGIN,
        f"Run on {datetime.date.today()} at commit `{commit}` by `benches/soak/soak.sh`"
        f" ({duration // 60} min, 2-core VM, everything on loopback). Raw samples:"
        " [soak.csv](soak.csv).",
        "",
        "![RSS, open descriptors and tasks over the soak](soak.png)",
        "",
        "| traffic | count |",
        "|---|---:|",
        f"| HTTP/1.1 requests (wrk mix) | {wrk.get('requests', '?')} ({wrk.get('non2xx', '?')} non-2xx by design: 401s and 403s; {wrk.get('errors', '?')} socket errors) |",
        f"| h2 requests (h2load) | {h2.get('succeeded', '?')} succeeded, {h2.get('failed', '?')} failed |",
        f"| WebSocket tunnels, 5 echoes each | {tunnels.get('tunnels', '?')} ({tunnels.get('failed', '?')} failed, {tunnels.get('unexpected', '?')} unexpected answers) |",
        f"| tunnels refused without a token (401) | {tunnels.get('refused', '?')} |",
        f"| outbound requests with the injected token | {tunnels.get('outbound_ok', '?')} ({tunnels.get('outbound_other', '?')} other statuses, {tunnels.get('outbound_failed', '?')} failed) |",
        f"| requests counted by tokengate | {int(num(final, 'requests'))} |",
        f"| full verifications (cache misses) | {int(num(final, 'verify_misses'))} |",
        f"| outbound token renewals (10 s tokens) | {int(num(final, 'token_renewals'))} |",
        f"| JWKS refreshes | {int(num(final, 'jwks_refreshes'))} |",
        "",
        "| after warm-up | minute 2 (mean) | last minute (mean) | bound | |",
        "|---|---:|---:|---:|---|",
    ]
    for key, early, late, bound, passed, unit in checks:
        lines.append(f"| {key.replace('_mib', '')} | {early:.1f}{unit} | {late:.1f}{unit} | ≤ {bound:.1f}{unit} | {'within' if passed else '**exceeded**'} |")
    lines += [
        "",
        "| minute | RSS (MiB) | descriptors | tasks |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        if int(num(r, "seconds")) % 60 == 0:
            lines.append(f"| {int(num(r, 'seconds')) // 60} | {num(r, 'rss_mib'):.1f} | {int(num(r, 'fds'))} | {int(num(r, 'tasks'))} |")
    lines.append(END)
    security = docs / "SECURITY.md"
    text = security.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    security.write_text(text[:start] + "\n".join(lines) + text[end:])
    print("soak: " + ("within the bound" if ok else "GROWTH EXCEEDED THE BOUND"), file=sys.stderr)
    for key, early, late, bound, passed, unit in checks:
        print(f"soak: {key}: {early:.1f} -> {late:.1f} (bound {bound:.1f})", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
