#!/usr/bin/env python3
"""Tabulates `vtune verify --json` reports: one row per LABEL=REPORT.json argument.

  verdicts.py [--markdown] LABEL=REPORT.json[,PROVIDER.json] ...

PROVIDER.json, when given, is the provider simulator's result with the held-out answer loss
(scripts/fixtures.sh writes it). Used by scripts/demo.sh and scripts/e2e.sh.
"""
import json
import math
import sys


def p(log10):
    if log10 >= 0:
        return "1"
    e = math.floor(log10)
    m = 10 ** (log10 - e)
    if m >= 9.95:
        m, e = 1.0, e + 1
    return f"{m:.1f}e{e}"


def main():
    args = sys.argv[1:]
    md = args[:1] == ["--markdown"]
    if md:
        args = args[1:]
    rows = []
    for a in args:
        label, _, files = a.partition("=")
        report, _, provider = files.partition(",")
        r = json.load(open(report))
        loss = json.load(open(provider)).get("heldout_answer_loss") if provider else None
        rows.append([
            label,
            f"{r['hits']}/{r['planted_groups']}",
            p(r["log10_p_agnostic"]),
            p(r["log10_p_base"]),
            f"{r['decoy_hits']}/{r['decoys']}",
            f"{100 * r['planted_copies'] / (r['records'] + r['planted_copies']):.2f}%",
            f"{loss:.4f}" if loss is not None else "-",
            "VERIFIED" if r["verified"] else "not verified",
        ])
    head = ["provider", "hits", "p_agnostic", "p_base", "decoy hits", "planted", "held-out loss", "verdict"]
    if all(row[6] == "-" for row in rows):  # no provider results given: no loss column
        head.pop(6)
        for row in rows:
            row.pop(6)
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head] + rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
