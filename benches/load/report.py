#!/usr/bin/env python3
"""benches/load/run.sh's results.tsv → BENCHMARKS.md and a PNG chart (gnuplot).

Medians over the interleaved rounds; every ratio compares medians taken in the
same run of the script. Targets are the ones of issue 4.
"""
import argparse
import csv
import datetime
import os
import platform
import statistics
import subprocess
import sys

CASES = [
    ("direct", "wrk → upstream nginx, no proxy (the ceiling)"),
    ("nginx", "nginx 1.22 plain reverse proxy, 1 worker, upstream keep-alive"),
    ("haproxy-pass", "HAProxy 2.6 plain reverse proxy, 1 thread"),
    ("haproxy-rs256", "HAProxy 2.6 `jwt_verify` RS256 + iss/aud/exp checks (verifies every request)"),
    ("tg-pass", "tokengate inbound, anonymous rule (its own pass-through)"),
    ("tg-pass-nolog", "as `tg-pass`, with `--access-log off`"),
    ("tg-rs256", "tokengate inbound, the same RS256 token on every request (cache hits), `sub` → header"),
    ("tg-es256", "tokengate inbound, the same ES256 token on every request (cache hits)"),
    ("tg-opaque", "tokengate inbound, the same opaque token (as long as the RS256 one) on every request: introspected once, then introspection-cache hits"),
    ("tg-dpop", "tokengate inbound, the same DPoP-bound RS256 token (cache hits) with a fresh, pre-signed ES256 proof on every request: each proof checked and spent"),
    ("tg-rs256-unique", "tokengate inbound, a different RS256 token on every request (every one a cache miss)"),
    ("tg-rs256-twice", "tokengate inbound, each new RS256 token sent twice in a row: once the cache is full (after 10 000 tokens), verified twice and cached once (the doorkeeper's worst case; the cache turns over)"),
    ("nginx-authz", "nginx 1.22 `auth_request` → tokengate `authz` (forward-auth), then the upstream; the same RS256 token (cache hits); nginx and tokengate share the proxy core"),
    ("nginx-authz-unique", "as `nginx-authz`, a different RS256 token on every request"),
    ("tg-out-pass", "tokengate outbound, a route without a token (its own pass-through)"),
    ("tg-out-inject", "tokengate outbound, injecting a client_credentials token"),
    ("tg-out-dpop", "tokengate outbound, injecting a DPoP-bound token with an ES256 proof signed for every request"),
    ("haproxy-pass-2c", "as `haproxy-pass`, `nbthread 2` on both cores (shared with wrk and the upstream)"),
    ("haproxy-rs256-2c", "as `haproxy-rs256`, `nbthread 2` on both cores"),
    ("tg-pass-2c", "as `tg-pass`, 2 workers on both cores"),
    ("tg-rs256-unique-2c", "as `tg-rs256-unique`, 2 workers on both cores"),
]
# Two-core case → its one-core counterpart.
TWO_CORE = {
    "haproxy-pass-2c": "haproxy-pass",
    "haproxy-rs256-2c": "haproxy-rs256",
    "tg-pass-2c": "tg-pass",
    "tg-rs256-unique-2c": "tg-rs256-unique",
}
MIB = 1024.0


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        for k, v in r.items():
            if k != "case":
                r[k] = float(v)
    return rows


def median(rows, case, conns, field):
    values = [r[field] for r in rows if r["case"] == case and r["conns"] == conns]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def fmt_num(x, unit=""):
    return "—" if x is None else f"{x:,.0f}{unit}"


def cmd_version(args):
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except OSError:
        return "not found"


def machine(root):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rev = cmd_version(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; tokengate commit `{rev}`",
        f"- CPU: {cpu}, {os.cpu_count()} cores; kernel {platform.release()}",
        f"- {cmd_version(['nginx', '-v'])}; {cmd_version(['haproxy', '-v'])}; {cmd_version(['wrk', '-v'])}",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("markdown")
    ap.add_argument("chart")
    ap.add_argument("--duration", default="?")
    ap.add_argument("--rounds", default="?")
    ap.add_argument("--alloc", help="benches/alloc.rs --tsv output")
    a = ap.parse_args()
    rows = load(a.results)
    root = os.path.dirname(os.path.abspath(a.markdown))
    conns_list = sorted({r["conns"] for r in rows})
    present = [(c, d) for c, d in CASES if any(r["case"] == c for r in rows)]

    bad = [r for r in rows if r["non2xx"] or r["errors"]]
    out = [
        "# Load benchmark",
        "",
        "Produced by `benches/load/run.sh` (do not edit by hand; rerun it). Loopback only;",
        "each proxy pinned to one core with `taskset`, wrk (1 thread) and the upstream nginx",
        "(a fixed `200 ok`) pinned to the other (the `-2c` cases: the proxy on both cores);",
        "tokengate runs with its defaults, logging at info with the access log on (written",
        "to a file); every case started fresh for each run,",
        f"warmed up for 1 s, then measured for {a.duration} s; {a.rounds} interleaved rounds",
        "(A B C … A B C …); the tables show medians, and every ratio compares medians from",
        "this one run. Every inbound case sends the same request, with a 598-byte RS256",
        "bearer token (ES256 and unique-token cases: their own tokens), and every proxy",
        "forwards it upstream.",
        "",
        *machine(root),
        "",
        "Cases:",
        "",
        *[f"- `{c}`: {d}" for c, d in present],
        "",
    ]
    if bad:
        out += ["**Runs with non-2xx answers or socket errors (their numbers are suspect):**", ""]
        out += [f"- {r['case']} c{r['conns']:.0f} round {r['round']:.0f}: {r['non2xx']:.0f} non-2xx, {r['errors']:.0f} errors" for r in bad]
        out.append("")

    for conns in conns_list:
        tg_pass = median(rows, "tg-pass", conns, "rps")
        out_pass = median(rows, "tg-out-pass", conns, "rps")
        hap = median(rows, "haproxy-rs256", conns, "rps")
        out += [
            f"## 1 thread × {conns:.0f} connections",
            "",
            "| case | req/s | p50 | p99 | ÷ tokengate pass-through | ÷ HAProxy jwt_verify |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for case, _ in present:
            if case in TWO_CORE:
                continue
            rps = median(rows, case, conns, "rps")
            base = out_pass if case.startswith("tg-out") else tg_pass
            out.append(
                f"| `{case}` | {fmt_num(rps)} | {fmt_num(median(rows, case, conns, 'p50_us'), ' µs')} "
                f"| {fmt_num(median(rows, case, conns, 'p99_us'), ' µs')} | {fmt_ratio(ratio(rps, base))} "
                f"| {fmt_ratio(ratio(rps, hap))} |"
            )
        out += ["", "(outbound cases are divided by the outbound pass-through, the rest by the inbound one)", ""]

    out += two_cores(rows, conns_list)
    out += access_log_cost(rows, conns_list)
    out += allocations(a.alloc)

    # Targets, evaluated on these medians.
    targets = []

    def target(name, ok, shown):
        targets.append(f"| {name} | {shown} | {'met' if ok else '**missed**'} |")

    # (what, case, over case, field, is the ratio good enough, shown as)
    ratio_targets = [
        ("tokengate pass-through ≥ 1.0× HAProxy pass-through (issue 26)", "tg-pass", "haproxy-pass", "rps", lambda r: r >= 1.0, "{:.2f}×"),
        ("access log costs ≤ 3% of pass-through req/s (issue 26)", "tg-pass", "tg-pass-nolog", "rps", lambda r: r >= 0.97, lambda r: f"{1 - r:.1%}"),
        ("RS256 cache hits ≥ 95% of pass-through req/s", "tg-rs256", "tg-pass", "rps", lambda r: r >= 0.95, "{:.1%}"),
        ("RS256 cache hits p99 ≤ 110% of pass-through p99", "tg-rs256", "tg-pass", "p99_us", lambda r: r <= 1.10, "{:.1%}"),
        ("Opaque token, introspection-cache hits cost ≤ RS256 cache hits + 10% (issue 28)", "tg-opaque", "tg-rs256", "rps", lambda r: r >= 1 / 1.10, "{:.1%}"),
        ("RS256 cache hits ≥ 2.5× HAProxy jwt_verify", "tg-rs256", "haproxy-rs256", "rps", lambda r: r >= 2.5, "{:.2f}×"),
        ("RS256 unique tokens ≥ 1.4× HAProxy jwt_verify", "tg-rs256-unique", "haproxy-rs256", "rps", lambda r: r >= 1.4, "{:.2f}×"),
        ("tokengate pass-through ≥ nginx reverse proxy", "tg-pass", "nginx", "rps", lambda r: r >= 1.0, "{:.2f}×"),
        ("outbound injection ≥ 97% of outbound pass-through", "tg-out-inject", "tg-out-pass", "rps", lambda r: r >= 0.97, "{:.1%}"),
    ]
    for conns in conns_list:
        for what, case, base, field, good, shown in ratio_targets:
            r = ratio(median(rows, case, conns, field), median(rows, base, conns, field))
            if r is not None:
                text = shown(r) if callable(shown) else shown.format(r)
                target(f"c{conns:.0f}: {what}", good(r), text)

    out += forward_auth(rows, conns_list)

    tg_cases = [c for c, _ in present if c.startswith("tg-") or c.startswith("nginx-authz")]
    idle = [median(rows, c, conns, "rss_idle_kb") for c in tg_cases for conns in conns_list]
    idle = [x for x in idle if x]
    top = max(conns_list) if conns_list else 0
    # The RSS target is for one worker: the two-core cases hold a second
    # worker's state and are shown in the memory table only.
    peak = {c: median(rows, c, top, "rss_peak_kb") for c in tg_cases if not c.endswith("-2c")}
    peak = {c: v for c, v in peak.items() if v}
    if idle:
        worst = max(idle) / MIB
        target("idle RSS ≤ 15 MiB (largest median over tokengate cases)", worst <= 15, f"{worst:.1f} MiB")
    if peak:
        case, kb = max(peak.items(), key=lambda kv: kv[1])
        target(f"RSS under {top:.0f} connections ≤ 40 MiB (peak, one worker, worst case `{case}`)", kb / MIB <= 40, f"{kb / MIB:.1f} MiB")
    if targets:
        out += ["## Targets (issues 4 and 26)", "", "| target | measured | |", "|---|---:|---|", *targets, ""]

    # Memory.
    if tg_cases:
        out += [
            "## tokengate memory",
            "",
            "| case | idle RSS | RSS mid-run | peak RSS (VmHWM) | RSS after the run |",
            "|---|---:|---:|---:|---:|",
        ]
        for case in tg_cases:
            for conns in conns_list:
                vals = [median(rows, case, conns, f) for f in ("rss_idle_kb", "rss_load_kb", "rss_peak_kb", "rss_after_kb")]
                out.append(f"| `{case}` c{conns:.0f} | " + " | ".join("—" if v is None else f"{v / MIB:.1f} MiB" for v in vals) + " |")
        out.append("")
        for conns in conns_list:
            full = median(rows, "tg-rs256-twice", conns, "rss_after_kb")
            one = median(rows, "tg-rs256", conns, "rss_after_kb")
            misses = median(rows, "tg-rs256-twice", conns, "cache_misses")
            if full and one and misses:
                # Each token is cached on its second verification; 10 000 is
                # token_cache.max_entries in the bench config (the default).
                entries = min(misses / 2, 10000)
                per = (full - one) * 1024 / entries
                out.append(
                    f"- verified-token cache, c{conns:.0f}: RSS after the twice-sent-token run minus after the "
                    f"repeated-token run, over {entries:,.0f} entries (the cache's bound): **{per:,.0f} bytes per entry** "
                    f"(RS256 tokens of {token_len(a.results)} bytes, a 10 000-entry cache ≈ {per * 10000 / 1024 / MIB:.1f} MiB)."
                )
        uniq = [r for r in rows if r["case"] == "tg-rs256-unique"]
        if uniq:
            most = max(r["requests"] for r in uniq)
            tokens = max(r["tokens"] for r in uniq)
            hits = sum(r["cache_hits"] for r in uniq)
            wrapped = most > tokens
            out.append(
                f"- unique-token runs: at most {most:,.0f} requests per run from {tokens:,.0f} distinct tokens; "
                f"cache hits during those runs: {hits:,.0f}"
                + (" — **the token list wrapped, raise UNIQUE**" if wrapped else " (no token was sent twice).")
            )
        out.append("")

    out += ["![throughput and p99 per case](docs/benchmarks.png)", ""]
    out += kept_h2_section(a.markdown)
    with open(a.markdown, "w") as f:
        f.write("\n".join(out))
    chart(rows, present, conns_list, a.chart)


def two_cores(rows, conns_list):
    """Issue 26: each proxy on both cores, against HAProxy on both, and the
    scaling from one core to two (wrk and the upstream share the second core,
    so the factor is a floor)."""
    if not any(r["case"] in TWO_CORE for r in rows):
        return []
    out = [
        "## Two cores",
        "",
        "tokengate with 2 workers and HAProxy with `nbthread 2`, both pinned to both",
        "cores, which wrk and the upstream share: the scaling factor (÷ the same case",
        "on one core) is what a second core gave under that sharing.",
        "",
        "| case | conns | req/s | p99 | ÷ HAProxy on 2 cores | 1 → 2 cores |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    peer = {"tg-pass-2c": "haproxy-pass-2c", "tg-rs256-unique-2c": "haproxy-rs256-2c"}
    for conns in conns_list:
        for case, one in TWO_CORE.items():
            rps = median(rows, case, conns, "rps")
            if rps is None:
                continue
            hap = median(rows, peer[case], conns, "rps") if case in peer else None
            out.append(
                f"| `{case}` | {conns:.0f} | {fmt_num(rps)} | {fmt_num(median(rows, case, conns, 'p99_us'), ' µs')} "
                f"| {fmt_ratio(ratio(rps, hap))} | {fmt_ratio(ratio(rps, median(rows, one, conns, 'rps')))} |"
            )
    return out + [""]


def access_log_cost(rows, conns_list):
    """Issue 26: what the access log (on by default) costs a pass-through request."""
    lines = []
    for conns in conns_list:
        on, off = median(rows, "tg-pass", conns, "rps"), median(rows, "tg-pass-nolog", conns, "rps")
        if on and off:
            cost = 1 - on / off
            said = (
                f"it costs **{cost:.1%}** of pass-through throughput"
                if cost >= 0
                else f"on served {-cost:.1%} more than off: no cost shows above the run's noise"
            )
            lines.append(
                f"- c{conns:.0f}: {fmt_num(on)} req/s with the access log, {fmt_num(off)} with "
                f"`--access-log off`: {said}"
            )
    if not lines:
        return []
    return ["## Access log cost", "", "The access log is on by default; its cost, as 1 − on ÷ off (req/s moves by "
        "several percent between rounds here; callgrind's instruction counts, which do not, "
        "are in docs/performance.md):", "", *lines, ""]


def allocations(path):
    """Issue 26: benches/alloc.rs's heap allocations per request."""
    if not path or not os.path.exists(path):
        return []
    out = [
        "## Heap allocations per request",
        "",
        "`cargo bench --bench alloc`: a counting global allocator (in the bench only)",
        "around the real proxy on a single-threaded runtime, between a client and an",
        "upstream that allocate nothing per request; the same request as above, on one",
        "keep-alive connection, 3 000 requests counted after 500 of warm-up.",
        "",
        "| case | allocations | bytes |",
        "|---|---:|---:|",
    ]
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                out.append(f"| {parts[0]} | {parts[1]} | {int(float(parts[2])):,} |")
    return out + [""]


def forward_auth(rows, conns_list):
    """Issue 16: nginx + auth_request → tokengate authz, beside nginx alone and
    beside tokengate's inbound proxy. With the proxy core saturated, 1/req/s is
    the core time one request costs, so the difference from nginx alone is what
    the authz round trip (nginx's subrequest and tokengate's answer) costs."""
    if not any(r["case"] == "nginx-authz" for r in rows):
        return []
    out = [
        "## Forward-auth (nginx `auth_request` → tokengate `authz`)",
        "",
        "nginx and tokengate share the proxy core, so each row's req/s is what one core",
        "serves with forward-auth in place; \"round trip\" is its core time per request",
        "beyond nginx alone (1/req/s − 1/req/s of `nginx`).",
        "",
        "| conns | tokens | req/s | ÷ nginx alone | ÷ tokengate inbound proxy | round trip per request |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for conns in conns_list:
        alone = median(rows, "nginx", conns, "rps")
        for case, inbound, tokens in (("nginx-authz", "tg-rs256", "repeated (cache hits)"),
                                      ("nginx-authz-unique", "tg-rs256-unique", "unique (cache misses)")):
            rps = median(rows, case, conns, "rps")
            if rps is None:
                continue
            extra = 1e6 / rps - 1e6 / alone if alone else None
            out.append(
                f"| {conns:.0f} | {tokens} | {fmt_num(rps)} | {fmt_ratio(ratio(rps, alone))} "
                f"| {fmt_ratio(ratio(rps, median(rows, inbound, conns, 'rps')))} "
                f"| {'—' if extra is None else f'{extra:.1f} µs'} |"
            )
    return out + [""]


H2_BEGIN = "<!-- h2.sh: begin -->"
H2_END = "<!-- h2.sh: end -->"


def kept_h2_section(markdown):
    """benches/load/h2.sh's section of the current file, carried over as is."""
    try:
        with open(markdown) as f:
            text = f.read()
    except OSError:
        return []
    start, end = text.find(H2_BEGIN), text.find(H2_END)
    if start < 0 or end < start:
        return []
    return text[start:end + len(H2_END)].splitlines() + [""]


def token_len(results):
    path = os.path.join(os.path.dirname(results), "token-rs256")
    try:
        with open(path) as f:
            return len(f.read().strip())
    except OSError:
        return "?"


def chart(rows, present, conns_list, png):
    os.makedirs(os.path.dirname(png), exist_ok=True)
    data = png + ".dat"
    with open(data, "w") as f:
        for case, _ in present:
            vals = []
            for conns in conns_list:
                vals += [median(rows, case, conns, "rps") or 0, (median(rows, case, conns, "p99_us") or 0) / 1000]
            f.write(case + " " + " ".join(f"{v:.3f}" for v in vals) + "\n")
    rps_cols = ", ".join(
        f"'{data}' using {2 + 2 * i}:xtic(1) title '1×{c:.0f} conns'" for i, c in enumerate(conns_list)
    )
    p99_cols = ", ".join(
        f"'{data}' using {3 + 2 * i}:xtic(1) title '1×{c:.0f} conns'" for i, c in enumerate(conns_list)
    )
    script = f"""
set terminal pngcairo size 1200,900 font ',10'
set output '{png}'
set multiplot layout 2,1
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set grid ytics
set xtics rotate by -30
set key top right
set title 'Throughput (median req/s, higher is better)'
set ylabel 'req/s'
set yrange [0:*]
plot {rps_cols}
set title 'p99 latency (median of runs, lower is better)'
set ylabel 'ms'
plot {p99_cols}
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(data)


if __name__ == "__main__":
    sys.exit(main())
