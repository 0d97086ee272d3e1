#!/usr/bin/env python3
"""Tabulates `vtune verify --json` reports: one row per LABEL=REPORT.json argument.

  verdicts.py [--markdown] LABEL=REPORT.json[,PROVIDER.json] ...

PROVIDER.json, when given, is the provider simulator's result with the held-out answer loss
(scripts/fixtures.sh writes it). Used by scripts/demo.sh and scripts/e2e.sh.

Columns: hits of planted groups, p_agnostic, the whole-data test (X/c: sentinels above the
threshold out of c; p_data at min-share; share >= (95%): the one-sided 95% lower bound on the trained
share), decoy hits, the planted fraction, the held-out loss (only with PROVIDER.json), the verdict
and its reasons. Reports from before the whole-data test (no "verdict", "reasons", "whole_data")
still tabulate: "-" where a figure is missing, the verdict from "verified"; "n/a" where the
whole-data test was not available.
"""
import json
import math
import sys


def p(log10):
    """Formats a probability given as log10, as vtune's reports do (verifier.FormatP)."""
    if log10 >= 0:
        return "1"
    if log10 > -3:
        return f"{10 ** log10:.3g}"
    e = math.floor(log10)
    m = 10 ** (log10 - e)
    if m >= 9.95:
        m, e = 1.0, e + 1
    return f"{m:.1f}e{e}"


def whole_data(r):
    """X/c, p_data and the 95% share bound from a report's "whole_data", read defensively."""
    wd = r.get("whole_data")
    if not isinstance(wd, dict):
        return ["-", "-", "-"]
    if wd.get("available") is False:
        return ["n/a", "n/a", "n/a"]
    x, c = wd.get("x"), wd.get("sentinels")
    lp, share = wd.get("log10_p_data"), wd.get("share_lower_95")
    return [
        f"{x}/{c}" if x is not None and c is not None else "-",
        p(lp) if isinstance(lp, (int, float)) else "-",
        f"{100 * share:.0f}%" if isinstance(share, (int, float)) else "-",
    ]


def verdict(r):
    v = r.get("verdict")
    if isinstance(v, str) and v:
        return v
    if "verified" in r:
        return "VERIFIED" if r["verified"] else "NOT VERIFIED"
    return "-"


def planted(r):
    """Planted records as a share of the output (output_records; older reports: input + copies)."""
    copies, records = r.get("planted_copies"), r.get("records")
    if not isinstance(copies, (int, float)) or not isinstance(records, (int, float)):
        return "-"
    out = r.get("output_records") or records + copies
    return f"{100 * copies / out:.2f}%" if out > 0 else "-"


def main():
    args = sys.argv[1:]
    md = args[:1] == ["--markdown"]
    if md:
        args = args[1:]
    rows = []
    for a in args:
        label, _, files = a.partition("=")
        report, _, provider = files.partition(",")
        with open(report) as f:
            r = json.load(f)
        loss = None
        if provider:
            with open(provider) as f:
                loss = json.load(f).get("heldout_answer_loss")
        reasons = r.get("reasons")
        if isinstance(reasons, str):
            reasons = [reasons]
        lpa = r.get("log10_p_agnostic")
        rows.append([
            label,
            f"{r.get('hits', '-')}/{r.get('planted_groups', '-')}",
            p(lpa) if isinstance(lpa, (int, float)) else "-",
            *whole_data(r),
            f"{r.get('decoy_hits', '-')}/{r.get('decoys', '-')}",
            planted(r),
            f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
            verdict(r),
            "; ".join(str(x) for x in reasons) if isinstance(reasons, list) and reasons else "-",
        ])
    head = ["provider", "hits", "p_agnostic", "X/c", "p_data", "share >= (95%)", "decoy hits", "planted",
            "held-out loss", "verdict", "reason"]
    li = head.index("held-out loss")
    if all(row[li] == "-" for row in rows):  # no provider results given: no loss column
        head.pop(li)
        for row in rows:
            row.pop(li)
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |")
        return
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head] + rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
