#!/usr/bin/env python3
"""The numbers of scripts/bench/vs_dovecot.py: medians, ratios, the printed table and one JSON line,
from the rounds it measured (values in, values out; no I/O but the command line below).

Usage: vs_dovecot_table.py FILE.json   (the rounds as vs_dovecot.py writes them with --keep)
       vs_dovecot_table.py --self-test

A round holds one measurement of each server:

    {"round": 1,
     "dovecot":  {"deliveries": 9000, "seconds": 10.0, "failures": {"451": 2}, "stored": [9000],
                  "envelope_s": [0.05, 0.04, ...], "body_s": [0.03, ...], "error": null},
     "dovetail": {... "stored": [9000, 9000, 9000] ...}}

`deliveries` counts the 250 replies, `stored` the messages the server holds afterwards (one count
per node asked), `envelope_s` and `body_s` the times of `UID FETCH 1:* (FLAGS ENVELOPE)` and
`UID FETCH 1:* (BODY.PEEK[])`, each repeated. A server's measurement is an error when the driver
says so (`error`), when a stored count differs from its 250s (a lost or an unacknowledged
delivery: an error, not a number), or when it has no deliveries or no FETCH time; a round with an
error on either side is listed and left out of the medians.

Ratios are Dovetail ÷ Dovecot in each round: deliveries/s (target >= 1, higher is better) and
FETCH times (target <= 1.5, lower is better; each FETCH alone and their sum). The summary gives
the median over the good rounds of each ratio and each figure; the median of an even number of
values is the mean of the two middle ones.
"""
import json
import sys
from statistics import median  # the mean of the two middle values for an even count

DELIVERY_TARGET = 1.0
FETCH_TARGET = 1.5
EPSILON = 1e-9
SERVERS = ("dovecot", "dovetail")
# What Dovecot 2.3.19's LMTP did per 4 KiB delivery into a Maildir on this box (strace -f -c over
# 100 deliveries, 2026-12-06): the message file fsync'd before its rename into new/, and index
# files fdatasync'd.
FSYNC_NOTE = {
    "optimized": " (its default; per delivery 1 fsync of the message file + 2 fdatasync, by strace)",
    "always": " (per delivery 1 fsync of the message file + 5 fdatasync, by strace)",
}


def server_figures(m):
    """One server's figures in one round: (figures, error or None)."""
    if m.get("error"):
        return None, m["error"]
    if not m.get("deliveries") or not m.get("seconds"):
        return None, "no deliveries"
    stored = m.get("stored") or []
    if not stored:
        return None, "stored messages not counted"
    wrong = [n for n in stored if n != m["deliveries"]]
    if wrong:
        return None, f"{m['deliveries']} deliveries answered 250 but {'/'.join(map(str, stored))} stored"
    if not m.get("envelope_s") or not m.get("body_s"):
        return None, "no FETCH time"
    figures = {
        "deliveries_per_second": m["deliveries"] / m["seconds"],
        "envelope_s": median(m["envelope_s"]),
        "body_s": median(m["body_s"]),
    }
    figures["fetch_s"] = figures["envelope_s"] + figures["body_s"]
    return figures, None


def reduce_rounds(rounds):
    """The per-round figures and ratios, the medians over good rounds and the targets' verdicts."""
    per_round, errors = [], []
    for r in rounds:
        row = {"round": r["round"], "errors": []}
        for server in SERVERS:
            figures, error = server_figures(r[server])
            row[server] = figures
            failures = r[server].get("failures") or {}
            row[server + "_failures"] = sum(failures.values())
            if error:
                row["errors"].append(f"{server}: {error}")
        if not row["errors"]:
            dc, dt = row["dovecot"], row["dovetail"]
            row["ratios"] = {
                "deliveries": dt["deliveries_per_second"] / dc["deliveries_per_second"],
                "envelope": dt["envelope_s"] / dc["envelope_s"],
                "body": dt["body_s"] / dc["body_s"],
                "fetch": dt["fetch_s"] / dc["fetch_s"],
            }
        else:
            row["ratios"] = None
            errors.extend(f"round {r['round']}: {e}" for e in row["errors"])
        per_round.append(row)
    good = [row for row in per_round if row["ratios"]]
    summary = {"rounds": len(rounds), "good_rounds": len(good), "per_round": per_round,
               "errors": errors, "median": None, "targets": None}
    if good:
        med = {name: median([row["ratios"][name] for row in good]) for name in good[0]["ratios"]}
        for server in SERVERS:
            for name in ("deliveries_per_second", "envelope_s", "body_s", "fetch_s"):
                med[f"{server}_{name}"] = median([row[server][name] for row in good])
        summary["median"] = med
        # A ratio on the target counts as meeting it, whatever the last bit of its float says.
        summary["targets"] = {
            "deliveries": med["deliveries"] >= DELIVERY_TARGET - EPSILON,
            "envelope": med["envelope"] <= FETCH_TARGET + EPSILON,
            "body": med["body"] <= FETCH_TARGET + EPSILON,
            "fetch": med["fetch"] <= FETCH_TARGET + EPSILON,
        }
    return summary


def render(summary, meta):
    """The table a person reads. `meta`: dovecot_fsync, lmtp_nodes, imap_node, messages, size,
    sessions, duration."""
    def ms(seconds):
        return f"{seconds * 1000:.0f}"

    lines = [
        f"{'round':>5}  {'deliveries/s':>21} {'÷':>5}  {'ENVELOPE ms':>13} {'÷':>5}  "
        f"{'BODY[] ms':>13} {'÷':>5}  {'sum ÷':>5}",
        f"{'':>5}  {'Dovecot':>10} {'Dovetail':>10} {'':>5}  {'Dovecot':>6} {'Dtail':>6} {'':>5}  "
        f"{'Dovecot':>6} {'Dtail':>6} {'':>5}",
    ]
    for row in summary["per_round"]:
        if not row["ratios"]:
            lines.append(f"{row['round']:>5}  error: {'; '.join(row['errors'])}")
            continue
        dc, dt, q = row["dovecot"], row["dovetail"], row["ratios"]
        lines.append(
            f"{row['round']:>5}  {dc['deliveries_per_second']:>10.1f} {dt['deliveries_per_second']:>10.1f} "
            f"{q['deliveries']:>5.2f}  {ms(dc['envelope_s']):>6} {ms(dt['envelope_s']):>6} {q['envelope']:>5.2f}  "
            f"{ms(dc['body_s']):>6} {ms(dt['body_s']):>6} {q['body']:>5.2f}  {q['fetch']:>5.2f}"
        )
    med = summary["median"]
    if med:
        lines.append(
            f"{'med':>5}  {med['dovecot_deliveries_per_second']:>10.1f} {med['dovetail_deliveries_per_second']:>10.1f} "
            f"{med['deliveries']:>5.2f}  {ms(med['dovecot_envelope_s']):>6} {ms(med['dovetail_envelope_s']):>6} "
            f"{med['envelope']:>5.2f}  {ms(med['dovecot_body_s']):>6} {ms(med['dovetail_body_s']):>6} "
            f"{med['body']:>5.2f}  {med['fetch']:>5.2f}"
        )
        t = summary["targets"]

        def verdict(ok):
            return "met" if ok else "NOT met"

        lines.append(
            f"targets (median of {summary['good_rounds']} rounds' ratios, Dovetail ÷ Dovecot): "
            f"deliveries/s {med['deliveries']:.2f} >= {DELIVERY_TARGET}: {verdict(t['deliveries'])}; "
            f"FETCH time <= {FETCH_TARGET}: ENVELOPE {med['envelope']:.2f} {verdict(t['envelope'])}, "
            f"BODY[] {med['body']:.2f} {verdict(t['body'])}, both {med['fetch']:.2f} {verdict(t['fetch'])}"
        )
    else:
        lines.append("no good round: no medians")
    failures = [(row["round"], s, row[s + "_failures"]) for row in summary["per_round"] for s in SERVERS
                if row[s + "_failures"]]
    if failures:
        lines.append("non-250 LMTP replies (not counted as deliveries): "
                     + ", ".join(f"round {r} {s} {n}" for r, s, n in failures))
    lines.append(
        f"LMTP: {meta['sessions']} sessions x {meta['duration']} s of {meta['size']}-byte messages, Dovetail's "
        f"against {meta['lmtp_nodes']}; FETCH: {meta['messages']} messages over one connection, "
        f"Dovetail's on {meta['imap_node']}; times are medians of each round's repeats."
    )
    lines.append(
        f"Durability of a 250: Dovecot 2.3, one node, mail_fsync = {meta['dovecot_fsync']}"
        + FSYNC_NOTE.get(meta["dovecot_fsync"], "")
        + "; Dovetail, 3 nodes on this one disk: body and index entry fsync'd on a majority (2 of 3)."
    )
    if summary["errors"]:
        lines.append("ERRORS: " + "; ".join(summary["errors"]))
    return "\n".join(lines)


def json_line(summary, meta):
    """The machine-readable result: one line."""
    return json.dumps({"bench": "vs-dovecot", **meta, **summary}, sort_keys=True)


def self_test():
    def server(deliveries, seconds, envelope, body, stored=None, failures=None, error=None):
        return {"deliveries": deliveries, "seconds": seconds, "failures": failures or {},
                "stored": [deliveries] if stored is None else stored,
                "envelope_s": envelope, "body_s": body, "error": error}

    assert median([3, 1, 2]) == 2 and median([4, 1, 3, 2]) == 2.5 and median([5]) == 5
    # Two rounds (an even count: the medians are means of the two), hand-computed:
    #   round 1: Dovecot 1000/10 = 100/s, Dovetail 1200/10 = 120/s -> 1.2; ENVELOPE medians 0.040 and
    #   0.080 -> 2.0; BODY[] 0.050 and 0.050 -> 1.0; sum 0.090 and 0.130 -> 1.4444.
    #   round 2: 100/s and 80/s -> 0.8; ENVELOPE 0.040 and 0.040 -> 1.0; BODY[] 0.050 and 0.100 ->
    #   2.0; sum 0.090 and 0.140 -> 1.5556.
    #   medians: deliveries (1.2 + 0.8) / 2 = 1.0, envelope 1.5, body 1.5, fetch 1.5.
    rounds = [
        {"round": 1, "dovecot": server(1000, 10.0, [0.050, 0.040, 0.030], [0.050, 0.060, 0.040]),
         "dovetail": server(1200, 10.0, [0.080, 0.090, 0.070], [0.050], stored=[1200, 1200, 1200])},
        {"round": 2, "dovecot": server(500, 5.0, [0.040], [0.050]),
         "dovetail": server(800, 10.0, [0.030, 0.050], [0.100], stored=[800, 800, 800],
                            failures={"451": 3})},
    ]
    s = reduce_rounds(rounds)
    assert s["good_rounds"] == 2 and not s["errors"], s
    q1, q2 = s["per_round"][0]["ratios"], s["per_round"][1]["ratios"]
    close = lambda a, b: abs(a - b) < 1e-9  # noqa: E731
    assert close(q1["deliveries"], 1.2) and close(q1["envelope"], 2.0) and close(q1["body"], 1.0), q1
    assert close(q1["fetch"], 0.130 / 0.090) and close(q2["fetch"], 0.140 / 0.090), (q1, q2)
    assert close(q2["deliveries"], 0.8) and close(q2["envelope"], 1.0) and close(q2["body"], 2.0), q2
    m = s["median"]
    assert close(m["deliveries"], 1.0) and close(m["envelope"], 1.5) and close(m["body"], 1.5), m
    assert close(m["fetch"], 1.5) and close(m["dovetail_deliveries_per_second"], 100.0), m
    assert close(m["dovecot_envelope_s"], 0.040) and close(m["dovetail_body_s"], 0.075), m
    assert s["targets"] == {"deliveries": True, "envelope": True, "body": True, "fetch": True}, s
    meta = {"dovecot_fsync": "optimized", "lmtp_nodes": "nodes 1-3 round-robin", "imap_node": "node 1",
            "messages": 1000, "size": 4096, "sessions": 16, "duration": 10}
    text = render(s, meta)
    assert "  1.20 " in text and "  0.80 " in text, text
    assert "round 2 dovetail 3" in text and "mail_fsync = optimized (its default" in text, text
    assert "deliveries/s 1.00 >= 1.0: met" in text and "ERRORS" not in text, text
    assert json.loads(json_line(s, meta))["median"]["deliveries"] == m["deliveries"]

    # Three rounds, one with a failure on each kind: round 2's Dovetail stored fewer messages than
    # it answered 250 for on one node, round 3's Dovecot has a driver error. Only round 1 counts:
    # deliveries 150/100 = 1.5, envelope 0.2/0.1 = 2.0 (NOT met), body 0.1/0.1 = 1.0.
    rounds = [
        {"round": 1, "dovecot": server(1000, 10.0, [0.1], [0.1]),
         "dovetail": server(1500, 10.0, [0.2], [0.1], stored=[1500, 1500, 1500])},
        {"round": 2, "dovecot": server(1000, 10.0, [0.1], [0.1]),
         "dovetail": server(1500, 10.0, [0.1], [0.1], stored=[1500, 1499, 1500])},
        {"round": 3, "dovecot": server(0, 10.0, [], [], error="LMTP connection refused"),
         "dovetail": server(1500, 10.0, [0.1], [0.1], stored=[1500, 1500, 1500])},
    ]
    s = reduce_rounds(rounds)
    assert s["good_rounds"] == 1 and s["per_round"][1]["ratios"] is None, s
    assert s["errors"] == ["round 2: dovetail: 1500 deliveries answered 250 but 1500/1499/1500 stored",
                           "round 3: dovecot: LMTP connection refused"], s["errors"]
    m = s["median"]
    assert close(m["deliveries"], 1.5) and close(m["envelope"], 2.0) and close(m["body"], 1.0), m
    assert s["targets"] == {"deliveries": True, "envelope": False, "body": True, "fetch": True}, s
    text = render(s, dict(meta, dovecot_fsync="always"))
    assert "ENVELOPE 2.00 NOT met" in text and "mail_fsync = always (per delivery" in text, text
    assert "    2  error: dovetail: 1500 deliveries" in text and "ERRORS: round 2" in text, text

    # No good round at all: no medians, no verdict, the errors listed.
    s = reduce_rounds([{"round": 1, "dovecot": server(10, 1.0, [0.1], [0.1], stored=[11]),
                        "dovetail": server(10, 1.0, [0.1], [0.1])}])
    assert s["median"] is None and s["targets"] is None and len(s["errors"]) == 1, s
    assert "no good round" in render(s, meta)
    print("vs_dovecot_table.py: self-test passed")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 2:
        with open(sys.argv[1]) as f:
            saved = json.load(f)
        summary = reduce_rounds(saved["rounds"])
        print(render(summary, saved["meta"]))
        print(json_line(summary, saved["meta"]))
    else:
        sys.exit(__doc__)
