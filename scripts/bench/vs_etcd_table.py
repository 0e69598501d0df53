#!/usr/bin/env python3
"""The numbers of scripts/bench-vs-etcd.sh: every sum, merged percentile, ratio and median it
prints, from the files it writes (the shell only installs, starts and stops processes).

Usage (each prints what the shell needs on stdout):

  vs_etcd_table.py cpu-ticks PID...          user + system CPU ticks of the processes, summed
                                             (from /proc/PID/stat; a process gone counts 0)
  vs_etcd_table.py metric-pair NAME          "count sum" of the histogram NAME summed over the
                                             Prometheus texts on stdin (several /metrics pages)
  vs_etcd_table.py level DIR --system S --conns N --procs P --start-ns A --end-ns B
                   --cpu-ticks BEFORE AFTER --clk-tck T --fsync "C S" "C S"
                   [--batch "C S" "C S" --groups G]
                                             one results line (below) from DIR's wrk-I.out,
                                             summary-I (scripts/bench/common.lua's done()) and
                                             times-I (bash `times`), I = 0..P-1
  vs_etcd_table.py report RESULTS --connections "1 16" --duration D --target T
                   --etcd-version V --cores C --loadavg L [--mode writes|reads]
                   [--groups G[,G...]] [--json FILE]
                                             the side-by-side table, the resources table and the
                                             errors of one run; the same as JSON to FILE
  vs_etcd_table.py medians ALL_RESULTS --runs R --connections ... --duration D --target T
                   --etcd-version V --cores C [--mode writes|reads] [--groups G[,G...]]
                   [--json FILE]
                                             the medians over the runs (ALL_RESULTS: results
                                             lines each prefixed with the run's number)
  vs_etcd_table.py --self-test

A results line (tab-separated): system conns procs req_per_s requests p50_us p99_us non2xx
socket_errors nodes_cpu wrk_cpu fsyncs_per_s fsync_mean_ms entries_per_s requests_per_entry groups
(entries and requests per entry come from Dovetail's proposal batches, groups is Dovetail's group
count: all three "-" for etcd).

Tables have one row per connection count; with a --groups sweep (several group counts) one per
group count and connection count, with a first "groups" column, each Dovetail row beside the
etcd figures of the same run and connection count.

Merged percentiles: with one wrk process per node, the latency percentile q of all requests is the
smallest value v of any process's percentile grid such that the requests estimated at or below v
(each process: its requests times the highest grid percentile whose value is <= v) reach q% of all
requests. With one process this is exactly wrk's own percentile.

Ratios are Dovetail / etcd (> 1: Dovetail has more throughput or higher latency). With several
runs, each run's ratio comes from that run's pair of measurements, and the summary gives the median
of those ratios with their range; the median of an even count is the mean of the two middle ones.
"""
import argparse
import json
import os
import sys
from statistics import median  # the mean of the two middle values for an even count

SYSTEMS = ("etcd", "dovetail")
EPSILON = 1e-9


# --- measurement ------------------------------------------------------------------------------

def stat_ticks(stat):
    """utime + stime from the text of /proc/PID/stat (the command name may hold spaces and ")")."""
    fields = stat.rsplit(") ", 1)[1].split()
    # After the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    return int(fields[11]) + int(fields[12])


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                total += stat_ticks(f.read())
        except (OSError, IndexError, ValueError):
            pass
    return total


def metric_pair(text, name):
    """(count, sum) of the histogram `name` over every series of it in a Prometheus text."""
    count, total = 0.0, 0.0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        key = parts[0]
        if key == name + "_count" or key.startswith(name + "_count{"):
            count += float(parts[1])
        elif key == name + "_sum" or key.startswith(name + "_sum{"):
            total += float(parts[1])
    return count, total


def parse_pair(text):
    """A "count sum" pair as metric-pair prints it; None for an empty string."""
    if not text.strip():
        return None
    count, total = text.split()
    return float(count), float(total)


def to_seconds(t):
    """"XmY.YYYs" (bash `times`) -> seconds."""
    minutes, rest = t.split("m", 1)
    return int(minutes) * 60 + float(rest.rstrip("s"))


def times_cpu(text):
    """CPU seconds of a subshell's children (line 2 of bash `times`: user, system)."""
    user, system = text.splitlines()[1].split()[:2]
    return to_seconds(user) + to_seconds(system)


def parse_wrk_out(text):
    """(requests per second, non-2xx answers, socket errors) from wrk's printed output."""
    rps, non2xx, sockerr = 0.0, 0, 0
    for line in text.splitlines():
        if line.startswith("Requests/sec:"):
            rps += float(line.split()[1])
        elif "Non-2xx or 3xx responses:" in line:
            non2xx = int(line.split()[-1])
        elif "Socket errors:" in line:
            # "  Socket errors: connect 0, read 1, write 0, timeout 2"
            f = line.replace(",", "").split()
            sockerr = int(f[3]) + int(f[5]) + int(f[7]) + int(f[9])
    return rps, non2xx, sockerr


def parse_summary(text):
    """(requests, [(percentile, microseconds), ...]) from a summary common.lua's done() wrote."""
    requests, grid = 0, []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "requests":
            requests = int(parts[1])
        elif parts[0] == "p":
            grid.append((float(parts[1]), int(float(parts[2]))))
    return requests, grid


def merged_percentile(q, summaries):
    """Percentile q (0-100) of the requests of several wrk processes, each (requests, grid)."""
    total = sum(n for n, _ in summaries)
    candidates = sorted({v for _, grid in summaries for _, v in grid})
    if total == 0 or not candidates:
        return 0
    for x in candidates:
        below = 0.0
        for n, grid in summaries:
            best = max((p for p, v in grid if v <= x), default=0.0)
            below += n * best / 100
        if below >= q / 100 * total - EPSILON:
            return x
    return candidates[-1]


def level_row(system, conns, procs, outs, summaries, times, wall, cpu, clk_tck, fsync, batch,
              groups=None):
    """One results line (no newline). outs/summaries/times: the texts of each wrk process's files;
    wall: seconds; cpu: (ticks before, after); fsync, batch: ((count, sum) before, after), batch
    None for etcd; groups: Dovetail's group count (None for etcd)."""
    rps, requests, non2xx, sockerr, wrk_cpu, grids = 0.0, 0, 0, 0, 0.0, []
    for out, summary, t in zip(outs, summaries, times):
        r, e1, e2 = parse_wrk_out(out)
        rps += r
        non2xx += e1
        sockerr += e2
        n, grid = parse_summary(summary)
        requests += n
        grids.append((n, grid))
        wrk_cpu += times_cpu(t)
    p50 = merged_percentile(50, grids)
    p99 = merged_percentile(99, grids)
    fs = fsync[1][0] - fsync[0][0]
    fsum = fsync[1][1] - fsync[0][1]
    entries, per_entry = "-", "-"
    if batch is not None:
        # Proposal batches: one per log entry a leader proposed ("count sum" = entries, requests).
        n = batch[1][0] - batch[0][0]
        entries = "%.1f" % (n / wall)
        per_entry = "%.2f" % ((batch[1][1] - batch[0][1]) / n) if n > 0 else "0"
    return "%s\t%d\t%d\t%.1f\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.1f\t%.3f\t%s\t%s\t%s" % (
        system, conns, procs, rps, requests, p50, p99, non2xx, sockerr,
        (cpu[1] - cpu[0]) / clk_tck / wall, wrk_cpu / wall, fs / wall,
        fsum / fs * 1000 if fs > 0 else 0, entries, per_entry, "-" if groups is None else groups)


# --- results ----------------------------------------------------------------------------------

def parse_row(fields):
    """A results line's fields (without the run number) -> (system, groups, conns, figures);
    groups None for etcd (or a line without the column)."""
    groups = fields[15].strip() if len(fields) > 15 else "-"
    return fields[0], None if groups == "-" else int(groups), int(fields[1]), {
        "procs": int(fields[2]), "rps": float(fields[3]), "requests": int(fields[4]),
        "p50": int(float(fields[5])), "p99": int(float(fields[6])), "non2xx": int(fields[7]),
        "sockerr": int(fields[8]), "nodes_cpu": float(fields[9]), "wrk_cpu": float(fields[10]),
        "fsyncs": float(fields[11]), "fsync_ms": float(fields[12]),
        "entries": fields[13], "per_entry": fields[14],
    }


def read_rows(text):
    """{(system, groups, conns): figures} from a results file (a later line for the same key
    wins)."""
    rows = {}
    for line in text.splitlines():
        if line.strip():
            s, g, c, fig = parse_row(line.split("\t"))
            rows[s, g, c] = fig
    return rows


def read_all_rows(text):
    """[(run, system, groups, conns, figures)] from the lines of every run, each prefixed with its
    run."""
    out = []
    for line in text.splitlines():
        if line.strip():
            fields = line.split("\t")
            out.append((int(fields[0]), *parse_row(fields[1:])))
    return out


def errors_of(fig):
    return fig["non2xx"] + fig["sockerr"]


def ms(us):
    return "%.2fms" % (us / 1000)


HEADINGS = {"writes": ("etcd (put)", "dovetail (append)"), "reads": ("etcd (range)", "dovetail (status)")}


class Layout:
    """The rows of a table: one per (Dovetail group count, connection count), the group counts
    outermost; with more than one group count (a --groups sweep) every line starts with a
    "groups" column, otherwise the table is as it always was."""

    def __init__(self, meta):
        self.groups = meta.get("groups") or [None]
        self.conns = meta["connections"]
        self.sweep = len(self.groups) > 1
        self.headings = HEADINGS[meta.get("mode", "writes")]

    def pairs(self):
        return [(g, c) for g in self.groups for c in self.conns]

    def head(self, label=""):
        return "%6s " % label if self.sweep else ""

    def row(self, g):
        return "%6d " % g if self.sweep else ""

    def where(self, s, g, c):
        if self.sweep and s == "dovetail":
            return "%s with %d groups at %d connections" % (s, g, c)
        return "%s at %d connections" % (s, c)


def key(s, g, c):
    """The results key of system s in the row of group count g: etcd has no groups."""
    return (s, None if s == "etcd" else g, c)


def report(rows, meta):
    """(text, JSON text) of one run. meta: connections (list), duration, target, etcd_version,
    cores, loadavg, and optionally mode ("writes" or "reads") and groups (list; Dovetail's group
    counts, one table row each)."""
    lay = Layout(meta)
    pairs = lay.pairs()

    def both(g, c):
        return key("etcd", g, c) in rows and key("dovetail", g, c) in rows

    def ratio(g, c, field, fmt):
        if both(g, c) and rows[key("etcd", g, c)][field] > 0:
            return fmt % (rows[key("dovetail", g, c)][field] / rows[key("etcd", g, c)][field])
        return None

    def cell(s, g, c):
        f = rows.get(key(s, g, c))
        if not f:
            return "%10s %9s %9s" % ("-", "-", "-")
        return "%9.0f%s %9s %9s" % (f["rps"], "!" if errors_of(f) > 0 else " ", ms(f["p50"]), ms(f["p99"]))

    lines = [lay.head() + "%11s | %-31s | %-31s | %s" % ("", *lay.headings, "ratio dovetail/etcd"),
             lay.head("groups") + "%11s | %10s %9s %9s | %10s %9s %9s | %10s %6s %6s" % (
                 "connections", "req/s", "p50", "p99", "req/s", "p50", "p99", "throughput", "p50", "p99")]
    for g, c in pairs:
        r = [ratio(g, c, f, "%.2f") or "-" for f in ("rps", "p50", "p99")]
        lines.append(lay.row(g) + "%11d | %s | %s | %10s %6s %6s"
                     % (c, cell("etcd", g, c), cell("dovetail", g, c), *r))
    lines.append("")
    lines.append("resources (CPU in cores busy on average, of %d; log fsyncs summed over the 3 nodes;"
                 % meta["cores"])
    lines.append("for Dovetail also the log entries its leaders proposed per second, and requests per entry)")
    lines.append(lay.head("groups") + "%11s | %9s %8s %9s %9s | %9s %8s %9s %9s %9s %9s" % (
        "connections", "etcd CPU", "wrk CPU", "fsync/s", "fsync ms", "dvt CPU", "wrk CPU", "fsync/s",
        "fsync ms", "entries/s", "req/entry"))
    for g, c in pairs:
        line = lay.row(g) + "%11d" % c
        for s in SYSTEMS:
            f = rows.get(key(s, g, c))
            if f:
                line += " | %9.2f %8.2f %9.0f %9.2f" % (f["nodes_cpu"], f["wrk_cpu"], f["fsyncs"], f["fsync_ms"])
            else:
                line += " | %9s %8s %9s %9s" % ("-", "-", "-", "-")
            if s == "dovetail":
                entries = "-" if not f or f["entries"] == "-" else "%.0f" % float(f["entries"])
                line += " %9s %9s" % (entries, f["per_entry"] if f else "-")
        lines.append(line)
    errors, seen = [], set()
    for g, c in pairs:
        for s in SYSTEMS:
            f = rows.get(key(s, g, c))
            if f and errors_of(f) > 0 and key(s, g, c) not in seen:
                seen.add(key(s, g, c))
                errors.append("  %s: %d non-2xx answers, %d socket errors of %d requests"
                              % (lay.where(s, g, c), f["non2xx"], f["sockerr"], f["requests"]))
    clean = not errors
    if errors:
        lines.append("")
        lines.append("ERRORS (the rows marked !):")
        lines.extend(errors)
    else:
        lines.append("")
        lines.append("no errors: every answer was 2xx, no socket errors")

    def jnum(v):
        return "null" if v in ("", "-") else v

    def jsys(s, g, c):
        f = rows.get(key(s, g, c))
        if not f:
            return "null"
        return ('{"requests_per_second": %.1f, "requests": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, '
                '"socket_errors": %d, "wrk_processes": %d, "nodes_cpu_cores": %.2f, "wrk_cpu_cores": %.2f, '
                '"fsyncs_per_second": %.1f, "fsync_mean_ms": %.3f, "entries_per_second": %s, '
                '"requests_per_entry": %s}' % (
                    f["rps"], f["requests"], f["p50"], f["p99"], f["non2xx"], f["sockerr"], f["procs"],
                    f["nodes_cpu"], f["wrk_cpu"], f["fsyncs"], f["fsync_ms"], jnum(f["entries"]),
                    jnum(f["per_entry"])))

    js = ['{"duration_s": %d, "target": %s, "mode": %s, "groups": %s, "cores": %d, "loadavg_before": %s, '
          '"etcd_version": %s, "clean": %s,' % (
              meta["duration"], json.dumps(meta["target"]), json.dumps(meta.get("mode", "writes")),
              json.dumps(meta.get("groups")), meta["cores"], json.dumps(meta["loadavg"]),
              json.dumps(meta["etcd_version"]), "true" if clean else "false"),
          ' "rows": [']
    for i, (g, c) in enumerate(pairs):
        r = [ratio(g, c, f, "%.3f") or "null" for f in ("rps", "p50", "p99")]
        js.append('  {"connections": %d, "groups": %s,\n   "etcd": %s,\n   "dovetail": %s,\n'
                  '   "ratio": {"throughput": %s, "p50": %s, "p99": %s}}%s'
                  % (c, json.dumps(g), jsys("etcd", g, c), jsys("dovetail", g, c), *r,
                     "," if i < len(pairs) - 1 else ""))
    js.append(" ]}")
    return "\n".join(lines), "\n".join(js) + "\n"


def reduce_runs(all_rows, pairs):
    """Per (system, groups, conns) the lists of rps/p50/p99 over the runs, per (groups, conns,
    figure) the list of the runs' own ratios (a run with both systems in that row and etcd's figure
    > 0), and whether any run had an error. pairs: the rows, (groups, conns)."""
    vals, ratios, got, unclean = {}, {}, {}, False
    for run, s, g, c, f in all_rows:
        for field in ("rps", "p50", "p99"):
            vals.setdefault((s, g, c, field), []).append(f[field])
        got[run, s, g, c] = f
        if errors_of(f) > 0:
            unclean = True
    for run in sorted({row[0] for row in all_rows}):
        for g, c in pairs:
            e, d = got.get((run, *key("etcd", g, c))), got.get((run, *key("dovetail", g, c)))
            if not (e and d):
                continue
            for field in ("rps", "p50", "p99"):
                if e[field] > 0:
                    ratios.setdefault((g, c, field), []).append(d[field] / e[field])
    return vals, ratios, unclean


def report_medians(all_rows, meta):
    """(text, JSON text) of several runs. meta: as report()'s (no loadavg) and runs."""
    lay = Layout(meta)
    pairs = lay.pairs()
    vals, ratios, unclean = reduce_runs(all_rows, pairs)

    def cell(s, g, c):
        k = key(s, g, c)
        if (*k, "rps") not in vals:
            return "%10s %9s %9s" % ("-", "-", "-")
        return "%10.0f %9s %9s" % (median(vals[(*k, "rps")]), ms(median(vals[(*k, "p50")])),
                                   ms(median(vals[(*k, "p99")])))

    def rcell(g, c, f):
        if (g, c, f) not in ratios:
            return "%17s" % "-"
        r = ratios[g, c, f]
        return "%4.2f (%4.2f-%4.2f)" % (median(r), min(r), max(r))

    lines = ["",
             "median over %d runs (ratios: the median of the runs' own ratios, their range in brackets)"
             % meta["runs"],
             lay.head() + "%11s | %-31s | %-31s | %s" % ("", *lay.headings, "ratio dovetail/etcd"),
             lay.head("groups") + "%11s | %10s %9s %9s | %10s %9s %9s | %17s %17s %17s" % (
                 "connections", "req/s", "p50", "p99", "req/s", "p50", "p99", "throughput", "p50", "p99")]
    for g, c in pairs:
        lines.append(lay.row(g) + "%11d | %s | %s | %s %s %s" % (
            c, cell("etcd", g, c), cell("dovetail", g, c), rcell(g, c, "rps"), rcell(g, c, "p50"),
            rcell(g, c, "p99")))
    lines.append("")
    lines.append("some runs had errors (see their tables)" if unclean
                 else "no errors in any run: every answer was 2xx, no socket errors")

    def jmed(s, g, c):
        k = key(s, g, c)
        if (*k, "rps") not in vals:
            return "null"
        # %d of a median: truncated, as the awk this replaces did.
        return '{"requests_per_second": %.1f, "p50_us": %d, "p99_us": %d, "runs": %d}' % (
            median(vals[(*k, "rps")]), int(median(vals[(*k, "p50")])), int(median(vals[(*k, "p99")])),
            len(vals[(*k, "rps")]))

    def jratio(g, c, f):
        if (g, c, f) not in ratios:
            return "null"
        r = ratios[g, c, f]
        return '{"median": %.3f, "min": %.3f, "max": %.3f}' % (median(r), min(r), max(r))

    js = ['{"duration_s": %d, "target": %s, "mode": %s, "groups": %s, "cores": %d, "runs": %d, '
          '"etcd_version": %s, "clean": %s,' % (
              meta["duration"], json.dumps(meta["target"]), json.dumps(meta.get("mode", "writes")),
              json.dumps(meta.get("groups")), meta["cores"], meta["runs"],
              json.dumps(meta["etcd_version"]), "false" if unclean else "true"),
          ' "median_rows": [']
    for i, (g, c) in enumerate(pairs):
        js.append('  {"connections": %d, "groups": %s,\n   "etcd": %s,\n   "dovetail": %s,\n'
                  '   "ratio": {"throughput": %s, "p50": %s, "p99": %s}}%s'
                  % (c, json.dumps(g), jmed("etcd", g, c), jmed("dovetail", g, c), jratio(g, c, "rps"),
                     jratio(g, c, "p50"), jratio(g, c, "p99"), "," if i < len(pairs) - 1 else ""))
    js.append(" ]}")
    return "\n".join(lines), "\n".join(js) + "\n"


# --- self-test --------------------------------------------------------------------------------

def grid_text(requests, points):
    return "requests %d\nduration_us 1000000\n" % requests + "".join("p %.2f %d\n" % pv for pv in points)


WRK_OUT = """Running 2s test @ http://127.0.0.1:23791
  1 threads and 4 connections
  Latency Distribution
     50%  1.00ms
  2000 requests in 2.00s, 1.2MB read
  Socket errors: connect 1, read 2, write 0, timeout 4
  Non-2xx or 3xx responses: 7
Requests/sec:   1000.50
Transfer/sec:    600.00KB
"""


def self_test():
    close = lambda a, b: abs(a - b) < 1e-9  # noqa: E731

    # /proc/PID/stat with a command name holding ") " and spaces: utime 7 + stime 5.
    assert stat_ticks("42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0") == 12
    assert cpu_ticks([os.getpid()]) >= 0 and cpu_ticks([999999999]) == 0

    metrics = ("# HELP x_count not a series\nx_count 3\nx_sum 0.5\n"
               'x_count{node="2"} 4\nx_sum{node="2"} 1.25\nx_count_total 100\nx_sum_other 9\n')
    assert metric_pair(metrics, "x") == (7.0, 1.75)
    assert metric_pair("", "x") == (0.0, 0.0)

    assert close(to_seconds("1m2.500s"), 62.5) and close(to_seconds("0m0.010s"), 0.01)
    assert close(times_cpu("0m0.001s 0m0.002s\n1m1.000s 0m0.500s\n"), 61.5)

    assert parse_wrk_out(WRK_OUT) == (1000.5, 7, 7)
    assert parse_wrk_out("Requests/sec: 5.0\n") == (5.0, 0, 0)

    # Merged percentiles, by hand. Process A: 100 requests, p50 = 10 us, p99 = 20 us, max 30 us;
    # process B: 300 requests, p50 = 40, p99 = 50, max 60. Candidates 10 20 30 40 50 60:
    #   at 10: 100 * 0.50 + 300 * 0 = 50 requests; at 20: 99; at 30: 100; at 40: 100 + 150 = 250;
    #   at 50: 100 + 297 = 397; at 60: 400.
    # p50 of 400 = 200 requests -> 40 (the first reaching 200); p99 = 396 -> 50; p25 = 100 -> 30;
    # p10 = 40 -> 10; p100 -> 60.
    a = parse_summary(grid_text(100, [(50, 10), (99, 20), (100, 30)]))
    b = parse_summary(grid_text(300, [(50, 40), (99, 50), (100, 60)]))
    assert a == (100, [(50.0, 10), (99.0, 20), (100.0, 30)]), a
    assert [merged_percentile(q, [a, b]) for q in (10, 25, 50, 99, 100)] == [10, 30, 40, 50, 60]
    # One process: wrk's own percentile, a grid value.
    assert merged_percentile(50, [b]) == 40 and merged_percentile(99.5, [b]) == 60
    # No requests (or no grid): 0.
    assert merged_percentile(50, [(0, [])]) == 0 and merged_percentile(50, []) == 0

    # One level: two wrk processes (the summaries above), 10 s wall, server CPU 2000 ticks at 100
    # per s -> 2.00 cores; wrk CPU 1.0 + 1.5 + 2.0 + 0.5 = 5.0 s -> 0.50; 30 fsyncs in 10 s ->
    # 3.0/s of mean (0.06 - 0.03) / 30 s = 1 ms; Dovetail's 50 entries carrying 400 requests ->
    # 5.0 entries/s, 8.00 requests per entry.
    out2 = WRK_OUT.replace("1000.50", "250.25").replace("connect 1, read 2", "connect 0, read 0")
    out2 = out2.replace("timeout 4", "timeout 0").replace("responses: 7", "responses: 0")
    row = level_row("dovetail", 4, 2, [WRK_OUT, out2], [grid_text(*a), grid_text(*b)],
                    ["0m0s 0m0s\n0m1.000s 0m1.500s\n", "0m0s 0m0s\n0m2.000s 0m0.500s\n"], 10.0,
                    (1000, 3000), 100, ((10, 0.03), (40, 0.06)), ((100, 800), (150, 1200)), groups=16)
    assert row == "dovetail\t4\t2\t1250.8\t400\t40\t50\t7\t7\t2.00\t0.50\t3.0\t1.000\t5.0\t8.00\t16", row
    assert parse_row(row.split("\t"))[:3] == ("dovetail", 16, 4)
    # etcd: no batches; no fsync at all -> mean 0.
    row = level_row("etcd", 1, 1, [out2], [grid_text(*a)], ["x\n0m0.100s 0m0.100s\n"], 2.0,
                    (0, 0), 100, ((5, 1.0), (5, 1.0)), None)
    assert row == "etcd\t1\t1\t250.2\t100\t10\t20\t0\t0\t0.00\t0.10\t0.0\t0.000\t-\t-\t-", row
    assert parse_row(row.split("\t"))[:3] == ("etcd", None, 1)

    # One run's report: at 16 connections both systems, Dovetail with errors (the ratio is still
    # given, the row marked "!"); at 64 only etcd (no ratio).
    results = ("etcd\t16\t3\t1000.0\t10000\t2000\t8000\t0\t0\t1.50\t0.40\t50.0\t2.000\t-\t-\n"
               "dovetail\t16\t3\t2500.0\t25000\t1000\t12000\t3\t2\t1.20\t0.60\t30.0\t1.500\t150.0\t16.67\n"
               "etcd\t64\t3\t3000.0\t30000\t4000\t9000\t0\t0\t1.70\t0.50\t60.0\t2.500\t-\t-\n")
    rows = read_rows(results)
    meta = {"connections": [16, 64], "duration": 10, "target": "all", "etcd_version": "3.4.23",
            "cores": 2, "loadavg": "0.10 0.20 0.30"}
    text, js = report(rows, meta)
    lines = text.split("\n")
    assert lines[2] == ("         16 |      1000     2.00ms    8.00ms |      2500!    1.00ms   12.00ms "
                        "|       2.50   0.50   1.50"), lines[2]
    assert lines[3] == ("         64 |      3000     4.00ms    9.00ms |          -         -         - "
                        "|          -      -      -"), lines[3]
    assert lines[8] == ("         16 |      1.50     0.40        50      2.00 |      1.20     0.60        30"
                        "      1.50       150     16.67"), lines[8]
    assert lines[9].endswith("|         -        -         -         -         -         -"), lines[9]
    assert "ERRORS (the rows marked !):" in text
    assert "  dovetail at 16 connections: 3 non-2xx answers, 2 socket errors of 25000 requests" in text
    j = json.loads(js)
    assert j["clean"] is False and j["loadavg_before"] == "0.10 0.20 0.30" and j["cores"] == 2, j
    assert j["rows"][0]["ratio"] == {"throughput": 2.5, "p50": 0.5, "p99": 1.5}, j["rows"][0]
    assert j["rows"][0]["dovetail"]["requests_per_entry"] == 16.67
    assert j["rows"][0]["etcd"]["entries_per_second"] is None
    assert j["rows"][1]["dovetail"] is None and j["rows"][1]["ratio"]["throughput"] is None
    text, js = report(read_rows(results.split("\n", 1)[0]), dict(meta, connections=[16]))
    assert text.endswith("\nno errors: every answer was 2xx, no socket errors") and json.loads(js)["clean"]

    # Medians over runs: 16 connections in 4 runs (an even count), 64 in 3 runs of which one has
    # no Dovetail figure (its run gives no ratio).
    #   16: etcd rps 100 200 300 400 -> 250; Dovetail 150 240 330 600 -> 285; ratios 1.5 1.2 1.1
    #   1.5 -> median (1.2 + 1.5) / 2 = 1.35, range 1.10-1.50. p50 etcd 10 20 30 41 -> 25; Dovetail
    #   5 10 20 41 -> 15; ratios 0.5 0.5 0.667 1.0 -> 0.5833. etcd p99 100 101 -> 100.5, truncated
    #   to 100 in the JSON as before; p99 ratios 1 1 0.990 0.990 -> 0.995.
    def line(run, s, c, rps, p50, p99, err=0):
        return "%d\t%s\t%d\t3\t%.1f\t100\t%d\t%d\t%d\t0\t1.00\t0.10\t1.0\t1.000\t-\t-\n" % (
            run, s, c, rps, p50, p99, err)
    all_text = "".join([
        line(1, "etcd", 16, 100, 10, 100), line(1, "dovetail", 16, 150, 5, 100),
        line(2, "etcd", 16, 200, 20, 100), line(2, "dovetail", 16, 240, 10, 100),
        line(3, "etcd", 16, 300, 30, 101), line(3, "dovetail", 16, 330, 20, 100),
        line(4, "etcd", 16, 400, 41, 101), line(4, "dovetail", 16, 600, 41, 100),
        line(1, "etcd", 64, 1000, 100, 1000), line(1, "dovetail", 64, 500, 100, 1000),
        line(2, "etcd", 64, 1000, 100, 1000), line(2, "dovetail", 64, 2000, 100, 1000),
        line(3, "etcd", 64, 1000, 100, 1000),
    ])
    all_rows = read_all_rows(all_text)
    vals, ratios, unclean = reduce_runs(all_rows, [(None, 16), (None, 64)])
    assert vals["dovetail", None, 64, "rps"] == [500.0, 2000.0] and not unclean
    assert [round(r, 6) for r in ratios[None, 16, "rps"]] == [1.5, 1.2, 1.1, 1.5], ratios
    assert close(median(ratios[None, 16, "rps"]), 1.35)
    assert close(median(ratios[None, 16, "p50"]), 0.5 + 1 / 12)
    assert median([4, 1, 3, 2]) == 2.5 and median([3, 1, 2]) == 2 and median([5]) == 5
    mmeta = {"connections": [16, 64, 256], "duration": 10, "target": "all", "etcd_version": "",
             "cores": 2, "runs": 4}
    text, js = report_medians(all_rows, mmeta)
    lines = text.split("\n")
    assert lines[1].startswith("median over 4 runs"), lines
    assert lines[4] == ("         16 |        250    0.03ms    0.10ms |        285    0.01ms    0.10ms "
                        "| 1.35 (1.10-1.50) 0.58 (0.50-1.00) 1.00 (0.99-1.00)"), lines[4]
    assert lines[5].endswith("| 1.25 (0.50-2.00) 1.00 (1.00-1.00) 1.00 (1.00-1.00)"), lines[5]
    assert lines[6].endswith("|                 -                 -                 -"), lines[6]
    assert lines[-1] == "no errors in any run: every answer was 2xx, no socket errors"
    j = json.loads(js)
    assert j["clean"] is True and j["runs"] == 4 and j["etcd_version"] == "", j
    r16 = j["median_rows"][0]
    assert r16["etcd"] == {"requests_per_second": 250.0, "p50_us": 25, "p99_us": 100, "runs": 4}, r16
    assert r16["ratio"]["throughput"] == {"median": 1.35, "min": 1.1, "max": 1.5}, r16
    assert j["median_rows"][1]["dovetail"]["runs"] == 2 and j["median_rows"][2]["etcd"] is None
    # One error anywhere makes the runs unclean.
    text, js = report_medians(read_all_rows(all_text + line(4, "etcd", 64, 1000, 100, 1000, err=1)), mmeta)
    assert text.endswith("some runs had errors (see their tables)") and not json.loads(js)["clean"]

    # A --groups sweep in reads mode: etcd measured once per run, Dovetail at 16 and 256 groups;
    # one row per (group count, connection count), each against the same etcd figure.
    #   run 1: etcd 1000/s; Dovetail 16 groups 800 (0.8), 256 groups 1200 (1.2, with errors).
    #   run 2: etcd 500/s; Dovetail 16 groups 600 (1.2), 256 groups 500 (1.0).
    #   medians: 16 groups 1.00 (0.80-1.20), 256 groups 1.10 (1.00-1.20).
    def gline(run, s, g, rps, err=0):
        return "%d\t%s\t64\t3\t%.1f\t100\t1000\t2000\t%d\t0\t1.00\t0.10\t1.0\t1.000\t-\t-\t%s\n" % (
            run, s, rps, err, g)
    sweep = "".join([gline(1, "etcd", "-", 1000), gline(1, "dovetail", 16, 800),
                     gline(1, "dovetail", 256, 1200, err=4), gline(2, "etcd", "-", 500),
                     gline(2, "dovetail", 16, 600), gline(2, "dovetail", 256, 500)])
    smeta = dict(meta, connections=[64], groups=[16, 256], mode="reads")
    run1 = "".join(line.split("\t", 1)[1] for line in sweep.splitlines(True) if line.startswith("1\t"))
    text, js = report(read_rows(run1), smeta)
    lines = text.split("\n")
    assert lines[0].startswith(" " * 7 + " " * 11 + " | etcd (range) ") and "dovetail (status)" in lines[0]
    assert lines[1].startswith("groups connections |"), lines[1]
    assert lines[2].startswith("    16          64 |      1000 ") and lines[2].endswith("       0.80   1.00   1.00")
    assert lines[3].startswith("   256          64 |      1000 ") and "1200!" in lines[3], lines[3]
    assert lines[3].endswith("       1.20   1.00   1.00"), lines[3]
    assert lines[7].startswith("groups connections |") and lines[9].startswith("   256          64 |")
    assert "  dovetail with 256 groups at 64 connections: 4 non-2xx answers" in text, text
    j = json.loads(js)
    assert j["mode"] == "reads" and j["groups"] == [16, 256] and not j["clean"], j
    assert [(r["groups"], r["ratio"]["throughput"]) for r in j["rows"]] == [(16, 0.8), (256, 1.2)], j
    assert j["rows"][0]["etcd"] == j["rows"][1]["etcd"], j
    text, js = report_medians(read_all_rows(sweep), dict(smeta, runs=2))
    lines = text.split("\n")
    assert lines[4] == ("    16          64 |        750    1.00ms    2.00ms |        700    1.00ms    2.00ms "
                        "| 1.00 (0.80-1.20) 1.00 (1.00-1.00) 1.00 (1.00-1.00)"), lines[4]
    assert lines[5].endswith("| 1.10 (1.00-1.20) 1.00 (1.00-1.00) 1.00 (1.00-1.00)"), lines[5]
    j = json.loads(js)
    assert j["median_rows"][1]["groups"] == 256 and j["median_rows"][1]["dovetail"]["runs"] == 2, j
    assert j["median_rows"][1]["ratio"]["throughput"] == {"median": 1.1, "min": 1.0, "max": 1.2}, j
    print("vs_etcd_table.py: self-test passed")


# --- command line -----------------------------------------------------------------------------

def read(path):
    with open(path) as f:
        return f.read()


def write_json(path, text):
    if path:
        with open(path, "w") as f:
            f.write(text)


def main(argv):
    if argv == ["--self-test"]:
        self_test()
        return
    if not argv:
        sys.exit(__doc__)
    ap = argparse.ArgumentParser(
        prog="vs_etcd_table.py",
        usage="%(prog)s cpu-ticks|metric-pair|level|report|medians ... | --self-test (see the top of the file)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("cpu-ticks")
    p.add_argument("pids", nargs="*")
    p = sub.add_parser("metric-pair")
    p.add_argument("name")
    p = sub.add_parser("level")
    p.add_argument("dir")
    p.add_argument("--system", required=True, choices=SYSTEMS)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--procs", type=int, required=True)
    p.add_argument("--start-ns", type=int, required=True)
    p.add_argument("--end-ns", type=int, required=True)
    p.add_argument("--cpu-ticks", type=int, nargs=2, required=True)
    p.add_argument("--clk-tck", type=int, required=True)
    p.add_argument("--fsync", nargs=2, required=True)
    p.add_argument("--batch", nargs=2)
    p.add_argument("--groups", type=int)
    for name in ("report", "medians"):
        p = sub.add_parser(name)
        p.add_argument("results")
        p.add_argument("--connections", required=True)
        p.add_argument("--duration", type=int, required=True)
        p.add_argument("--target", required=True)
        p.add_argument("--etcd-version", default="")
        p.add_argument("--cores", type=int, required=True)
        p.add_argument("--json", default="")
        p.add_argument("--mode", default="writes", choices=sorted(HEADINGS))
        p.add_argument("--groups", default="", help="Dovetail's group counts, comma-separated")
        if name == "report":
            p.add_argument("--loadavg", default="")
        else:
            p.add_argument("--runs", type=int, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "cpu-ticks":
        print(cpu_ticks(args.pids))
    elif args.cmd == "metric-pair":
        count, total = metric_pair(sys.stdin.read(), args.name)
        print("%d %.6f" % (count, total))
    elif args.cmd == "level":
        procs = range(args.procs)
        batch = None
        if args.batch and args.batch[0].strip():
            batch = (parse_pair(args.batch[0]), parse_pair(args.batch[1]))
        print(level_row(
            args.system, args.conns, args.procs,
            [read(os.path.join(args.dir, f"wrk-{i}.out")) for i in procs],
            [read(os.path.join(args.dir, f"summary-{i}")) for i in procs],
            [read(os.path.join(args.dir, f"times-{i}")) for i in procs],
            (args.end_ns - args.start_ns) / 1e9, tuple(args.cpu_ticks), args.clk_tck,
            (parse_pair(args.fsync[0]), parse_pair(args.fsync[1])), batch, args.groups))
    else:
        meta = {"connections": [int(c) for c in args.connections.split()], "duration": args.duration,
                "target": args.target, "etcd_version": args.etcd_version, "cores": args.cores,
                "mode": args.mode, "groups": [int(g) for g in args.groups.split(",") if g] or None}
        if args.cmd == "report":
            meta["loadavg"] = args.loadavg
            text, js = report(read_rows(read(args.results)), meta)
        else:
            meta["runs"] = args.runs
            text, js = report_medians(read_all_rows(read(args.results)), meta)
        print(text)
        write_json(args.json, js)


if __name__ == "__main__":
    main(sys.argv[1:])
