#!/usr/bin/env python3
"""benches/load/h2.sh's h2-results.tsv → its section of BENCHMARKS.md.

Medians over the interleaved rounds; every ratio compares medians from the same
run. The section sits between markers that benches/load/report.py carries over
when it rewrites the rest of the file.
"""
import argparse
import csv
import datetime
import statistics
import subprocess

BEGIN = "<!-- h2.sh: begin -->"
END = "<!-- h2.sh: end -->"
CASES = [
    ("grpc-direct", "h2load → the tonic-health app, no proxy (the ceiling)"),
    ("nginx-grpc", "nginx 1.22 `grpc_pass`, 1 worker, upstream keep-alive"),
    ("tg-h2-pass", "tokengate inbound, anonymous rule, h2 upstream (its own pass-through)"),
    ("tg-h2-rs256", "tokengate inbound, the same RS256 token on every call (cache hits)"),
    ("tg-h2-rs256-load", "as `tg-h2-rs256`, driven by `grpc_load.rs` (the unique case's client)"),
    ("tg-h2-unique-load", "tokengate inbound, a different RS256 token on every call (every one a cache miss), `grpc_load.rs`"),
]


def median(rows, case, field):
    values = [float(r[field]) for r in rows if r["case"] == case]
    return statistics.median(values) if values else None


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "—"


def num(x, unit=""):
    return "—" if x is None else f"{x:,.0f}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("markdown")
    for opt in ("--duration", "--rounds", "--conns", "--streams"):
        ap.add_argument(opt, default="?")
    a = ap.parse_args()
    with open(a.results, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    present = [(c, d) for c, d in CASES if any(r["case"] == c for r in rows)]
    rps = {c: median(rows, c, "rps") for c, _ in present}
    lat = {c: median(rows, c, "latency_us") for c, _ in present}
    out = [
        BEGIN,
        "## HTTP/2 and gRPC",
        "",
        "Produced by `benches/load/h2.sh` (do not edit by hand; rerun it). Unary",
        "`grpc.health.v1.Health/Check` calls, gRPC-framed with `te: trailers`, to a",
        "tonic-health app over h2c; the proxy pinned to one core, the load generator and",
        f"the app to the other. {a.conns} connections × {a.streams} concurrent streams,",
        f"each case started fresh, warmed up for 1 s (every call must end in",
        f"`grpc-status: 0`), measured for {a.duration} s; {a.rounds} interleaved rounds;",
        "medians. h2load reports a mean latency, `grpc_load.rs` a median.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; tokengate commit `{rev}`; {h2load}",
        "",
        "| case | calls/s | latency | ÷ tokengate h2 pass-through | ÷ nginx grpc_pass | failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case, _ in present:
        failed = sum(float(r["failed"]) for r in rows if r["case"] == case)
        out.append(
            f"| `{case}` | {num(rps[case])} | {num(lat[case], ' µs')} "
            f"| {ratio(rps[case], rps.get('tg-h2-pass'))} | {ratio(rps[case], rps.get('nginx-grpc'))} | {failed:.0f} |"
        )
    out += ["", "Cases:", "", *[f"- `{c}`: {d}" for c, d in present], ""]
    targets = []
    if rps.get("tg-h2-rs256") and rps.get("tg-h2-pass"):
        r = rps["tg-h2-rs256"] / rps["tg-h2-pass"]
        targets.append(f"- cached token ≥ 95% of tokengate's h2 pass-through: {r:.1%} — {'met' if r >= 0.95 else 'missed'}")
    if rps.get("tg-h2-pass") and rps.get("nginx-grpc"):
        r = rps["tg-h2-pass"] / rps["nginx-grpc"]
        targets.append(f"- tokengate h2 pass-through ≥ nginx `grpc_pass`: {r:.2f}× — {'met' if r >= 1 else 'missed'}")
    if rps.get("tg-h2-unique-load") and rps.get("tg-h2-rs256-load"):
        r = rps["tg-h2-unique-load"] / rps["tg-h2-rs256-load"]
        targets.append(f"- unique tokens ÷ cached tokens, same client: {r:.2f}×")
    if targets:
        out += ["Targets (issue 14), on these medians:", "", *targets, ""]
    out.append(END)

    try:
        with open(a.markdown) as f:
            text = f.read()
    except OSError:
        text = ""
    start, end = text.find(BEGIN), text.find(END)
    section = "\n".join(out)
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(a.markdown, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
