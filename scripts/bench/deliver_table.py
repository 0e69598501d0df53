#!/usr/bin/env python3
"""The table of scripts/bench/deliver.sh from the `dovetail bench --json` reports it wrote.

Usage: deliver_table.py DIR      (DIR holds floor-<size>.json, deliver-<size>-<conns>.json and
                                  append-<conns>.json)
       deliver_table.py --self-test

One row per (size, connections) of deliveries: messages/s, MB/s (10^6 bytes), p50 and p99, the
floor's MB/s for that size (files written and fsync'd one after another on the same
filesystem), the ratio of the two (target >= 0.3 for 1 MiB), and for 4 KiB the ratio of
deliveries to index-only appends at the same connections (target >= 0.5). A run with errors is
marked with "!" and listed below the table.
"""
import json
import os
import re
import sys

FLOOR_TARGET_SIZE = 1 << 20
FLOOR_TARGET = 0.3
APPEND_TARGET_SIZE = 4096
APPEND_TARGET = 0.5


def human_size(size):
    """4096 -> '4k', 102400 -> '100k', 1048576 -> '1m'."""
    if size % (1 << 20) == 0:
        return f"{size >> 20}m"
    if size % (1 << 10) == 0:
        return f"{size >> 10}k"
    return str(size)


def first_operation(report):
    """The one operation of a single-operation report: (name, figures)."""
    (name, op), = report["operations"].items()
    return name, op


def rows(floors, deliveries, appends):
    """floors: size -> report; deliveries: (size, conns) -> report; appends: conns -> report.

    Returns one dict per delivery run, sorted by size then connections.
    """
    out = []
    for (size, conns) in sorted(deliveries):
        _, op = first_operation(deliveries[size, conns])
        row = {
            "size": size,
            "connections": conns,
            "messages_per_second": op["messages_per_second"],
            "megabytes_per_second": op["megabytes_per_second"],
            "p50_us": op["latency_us"]["p50"],
            "p99_us": op["latency_us"]["p99"],
            "errors": op["errors"],
            "floor_megabytes_per_second": None,
            "ratio_to_floor": None,
            "appends_per_second": None,
            "ratio_to_appends": None,
        }
        if size in floors:
            _, floor = first_operation(floors[size])
            row["floor_megabytes_per_second"] = floor["megabytes_per_second"]
            if floor["megabytes_per_second"] > 0:
                row["ratio_to_floor"] = op["megabytes_per_second"] / floor["megabytes_per_second"]
        if size == APPEND_TARGET_SIZE and conns in appends:
            _, append = first_operation(appends[conns])
            row["appends_per_second"] = append["messages_per_second"]
            if append["messages_per_second"] > 0:
                row["ratio_to_appends"] = op["messages_per_second"] / append["messages_per_second"]
        out.append(row)
    return out


def render(table_rows, floors, appends):
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    def target(row):
        notes = []
        if row["size"] == FLOOR_TARGET_SIZE and row["ratio_to_floor"] is not None:
            notes.append(f"floor {'met' if row['ratio_to_floor'] >= FLOOR_TARGET else 'NOT met'} (>= {FLOOR_TARGET})")
        if row["ratio_to_appends"] is not None:
            notes.append(f"appends {'met' if row['ratio_to_appends'] >= APPEND_TARGET else 'NOT met'} (>= {APPEND_TARGET})")
        return ", ".join(notes)

    lines = [
        f"{'size':>5} {'conns':>5} {'msgs/s':>9} {'MB/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'floor MB/s':>10} {'÷ floor':>7} {'appends/s':>9} {'÷ appends':>9}  target"
    ]
    for row in table_rows:
        mark = "!" if row["errors"] else " "
        lines.append(
            f"{human_size(row['size']):>5} {row['connections']:>5} {row['messages_per_second']:>8.1f}{mark} "
            f"{row['megabytes_per_second']:>8.2f} {row['p50_us'] / 1000:>7.2f} {row['p99_us'] / 1000:>7.2f} "
            f"{num(row['floor_megabytes_per_second'], '.1f'):>10} {num(row['ratio_to_floor'], '.3f'):>7} "
            f"{num(row['appends_per_second'], '.1f'):>9} {num(row['ratio_to_appends'], '.2f'):>9}  {target(row)}"
        )
    lines.append("")
    for size in sorted(floors):
        _, floor = first_operation(floors[size])
        lines.append(
            f"floor {human_size(size)}: {floor['ops_per_second']:.1f} files/s, {floor['megabytes_per_second']:.1f} MB/s, "
            f"p50 {floor['latency_us']['p50'] / 1000:.2f} ms, p99 {floor['latency_us']['p99'] / 1000:.2f} ms "
            "(write + fsync, one file after another)"
        )
    for conns in sorted(appends):
        _, append = first_operation(appends[conns])
        lines.append(
            f"index-only appends at {conns} connections: {append['messages_per_second']:.1f}/s, "
            f"p50 {append['latency_us']['p50'] / 1000:.2f} ms, p99 {append['latency_us']['p99'] / 1000:.2f} ms"
            + (f", {append['errors']} errors" if append["errors"] else "")
        )
    lines.append(
        "all three replicas share one disk: each delivered body is written three times (once per "
        "replica; two before the answer) plus each node's log entry, so 0.33 of the floor is the disk's limit"
    )
    bad = [r for r in table_rows if r["errors"]]
    if bad:
        lines.append("ERRORS: " + ", ".join(f"{human_size(r['size'])} at {r['connections']}: {r['errors']}" for r in bad))
    return "\n".join(lines)


def load(directory):
    floors, deliveries, appends = {}, {}, {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".json"):
            continue
        with open(path) as f:
            report = json.load(f)
        if m := re.fullmatch(r"floor-(\d+)\.json", name):
            floors[int(m[1])] = report
        elif m := re.fullmatch(r"deliver-(\d+)-(\d+)\.json", name):
            deliveries[int(m[1]), int(m[2])] = report
        elif m := re.fullmatch(r"append-(\d+)\.json", name):
            appends[int(m[1])] = report
    return floors, deliveries, appends


def self_test():
    def report(name, ops_s, mb_s, errors=0):
        return {"operations": {name: {"ops_per_second": ops_s, "messages_per_second": ops_s,
                                      "megabytes_per_second": mb_s, "errors": errors,
                                      "latency_us": {"p50": 2000, "p99": 9000}}}}

    floors = {4096: report("write-fsync", 1000.0, 4.096), 1 << 20: report("write-fsync", 100.0, 104.8576)}
    deliveries = {(4096, 1): report("deliver", 300.0, 1.2288), (4096, 16): report("deliver", 900.0, 3.6864, 2),
                  (1 << 20, 16): report("deliver", 40.0, 41.94304)}
    appends = {1: report("append", 600.0, 0.0), 16: report("append", 2000.0, 0.0)}
    got = rows(floors, deliveries, appends)
    assert [(r["size"], r["connections"]) for r in got] == [(4096, 1), (4096, 16), (1 << 20, 16)]
    assert abs(got[0]["ratio_to_floor"] - 0.3) < 1e-9
    assert abs(got[0]["ratio_to_appends"] - 0.5) < 1e-9
    assert abs(got[1]["ratio_to_appends"] - 0.45) < 1e-9
    assert abs(got[2]["ratio_to_floor"] - 0.4) < 1e-9 and got[2]["ratio_to_appends"] is None
    text = render(got, floors, appends)
    assert "900.0!" in text and "ERRORS: 4k at 16: 2" in text, text
    assert "appends met (>= 0.5)" in text and "appends NOT met (>= 0.5)" in text, text
    assert "floor met (>= 0.3)" in text, text
    assert [human_size(s) for s in (4096, 102400, 1 << 20, 100)] == ["4k", "100k", "1m", "100"]
    print("deliver_table.py: self-test passed")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 2:
        floors, deliveries, appends = load(sys.argv[1])
        print(render(rows(floors, deliveries, appends), floors, appends))
    else:
        sys.exit(__doc__)
