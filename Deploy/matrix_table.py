#!/usr/bin/env python3
"""One table over the scenario matrix that Deploy/matrix.sh ran (Deploy/experiment.sh --matrix).

Reads OUT/<cell>/<pattern>/run-<n>/results.csv (written per run by plot_experiment.py) and
OUT/<cell>/calibration/calibration.json, and writes OUT/results.csv (one row per cell, pattern and mode, medians
over the runs) and OUT/results.md (the same, plus strata's four conditions per cell):
  (1) median time to the loss target <= 1/4 of synchronous FedAvg's (a FedAvg miss counts as its run length, so
      the condition then holds only if 4 x strata's time fits in it);
  (2) accuracy spread (max - min over the versions made in the 10 s after the accuracy target) <= 0.01 (median
      over runs);
  (3) model bytes (deltas in, parameters out) until the accuracy target <= FedAvg's;
  (4) final accuracy >= the best other mode's - 0.005 (medians over runs).
Every cell is listed, misses included ("-" where a run never reached a target). Exit status 0.
"""

import argparse
import csv
import json
import os
import statistics
import sys

NUMERIC = ["time_to_target_s", "time_to_loss_target_s", "accuracy_window_spread", "accuracy_window_drop", "bytes_to_target",
           "updates_to_target", "final_accuracy", "final_elapsed_s", "cpu_seconds", "updates_accepted"]


def number(text):
    try:
        return float(text) if text not in ("", None) else None
    except ValueError:
        return None


def median(values):
    """Median of the runs; a run without a value (a miss) counts as +inf, so a majority of misses is a miss."""
    if not values:
        return None
    xs = sorted(float("inf") if v is None else v for v in values)
    m = statistics.median(xs)
    return None if m == float("inf") else m


def collect(out, modes):
    cells = {}
    for base in sorted(os.listdir(out)):
        cell_dir = os.path.join(out, base)
        if not os.path.isdir(cell_dir) or not base.startswith("c"):
            continue
        calibration = None
        try:
            with open(os.path.join(cell_dir, "calibration", "calibration.json")) as f:
                calibration = json.load(f)
        except (OSError, ValueError):
            pass
        for pattern in sorted(os.listdir(cell_dir)):
            pattern_dir = os.path.join(cell_dir, pattern)
            if pattern == "calibration" or not os.path.isdir(pattern_dir):
                continue
            runs = {}
            for run in sorted(os.listdir(pattern_dir)):
                path = os.path.join(pattern_dir, run, "results.csv")
                if not os.path.isfile(path):
                    continue
                with open(path, newline="") as f:
                    for row in csv.DictReader(f):
                        runs.setdefault(row["mode"], []).append(row)
            cells[(base, pattern)] = {"calibration": calibration, "runs": runs}
    return cells


def summarise(cells, modes):
    rows = []
    for (base, pattern), cell in cells.items():
        for mode in modes:
            runs = cell["runs"].get(mode, [])
            ok = [r for r in runs if r.get("status") == "ok"]
            row = {"cell": base, "pattern": pattern, "mode": mode, "runs": len(runs), "ok_runs": len(ok),
                   "target": cell["calibration"] and cell["calibration"].get("target"),
                   "loss_target": cell["calibration"] and cell["calibration"].get("lossTarget")}
            for key in NUMERIC:
                row[key] = median([number(r.get(key)) for r in ok]) if ok else None
            row["reached"] = sum(1 for r in ok if number(r.get("time_to_target_s")) is not None)
            row["loss_reached"] = sum(1 for r in ok if number(r.get("time_to_loss_target_s")) is not None)
            rows.append(row)
    return rows


def conditions(rows, subject="strata"):
    """{(cell, pattern): [(passed, text)]} for `subject` (strata, or a variant such as strata@q8) against fedavg and
    the modes that are not strata variants."""
    by = {(r["cell"], r["pattern"], r["mode"]): r for r in rows}
    out = {}
    for (cell, pattern) in sorted({(r["cell"], r["pattern"]) for r in rows}):
        s, f = by.get((cell, pattern, subject)), by.get((cell, pattern, "fedavg"))
        checks = []
        if not s or not s["ok_runs"]:
            out[(cell, pattern)] = [(False, "strata did not run")]
            continue
        if not f or not f["ok_runs"]:
            out[(cell, pattern)] = [(False, "fedavg did not run")]
            continue
        st, ft = s["time_to_loss_target_s"], f["time_to_loss_target_s"]
        if st is None:
            checks.append((False, "(1) strata missed the loss target"))
        else:
            bound = ft if ft is not None else f["final_elapsed_s"]
            checks.append((4 * st <= bound, f"(1) loss target: strata {st:.1f} s, fedavg "
                                            f"{'%.1f s' % ft if ft is not None else 'missed (> %.0f s)' % bound}"
                                            f" = {bound / st:.1f}x" if st > 0 else "(1) reached at once"))
        spread = s["accuracy_window_spread"]
        checks.append((spread is not None and spread <= 0.01,
                       "(2) spread after the target " + ("-" if spread is None else f"{spread * 100:.1f} points")))
        sb, fb = s["bytes_to_target"], f["bytes_to_target"]
        if sb is None:
            checks.append((False, "(3) strata missed the accuracy target"))
        else:
            checks.append((fb is None or sb <= fb, f"(3) bytes to target: strata {sb / 1e6:.1f} MB, fedavg "
                                                   + ("missed" if fb is None else f"{fb / 1e6:.1f} MB")))
        others = [by[(cell, pattern, m)] for (c, p, m) in by if c == cell and p == pattern and not m.startswith("strata")]
        best = max((o for o in others if o["final_accuracy"] is not None), key=lambda o: o["final_accuracy"], default=None)
        fa = s["final_accuracy"]
        if fa is None or best is None:
            checks.append((False, "(4) no final accuracy"))
        else:
            checks.append((fa >= best["final_accuracy"] - 0.005,
                           f"(4) final accuracy {fa:.4f}, best other {best['mode']} {best['final_accuracy']:.4f}"))
        out[(cell, pattern)] = checks
    return out


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--modes", nargs="+", default=["fedavg", "fedbuff", "strata"])
    args = p.parse_args(argv)
    cells = collect(args.out, args.modes)
    rows = summarise(cells, args.modes)
    columns = ["cell", "pattern", "mode", "runs", "ok_runs", "target", "loss_target", "reached", "loss_reached"] + NUMERIC
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    subjects = [m for m in args.modes if m.startswith("strata")] or ["strata"]
    lines = ["# Scenario matrix", "",
             "Medians over the runs of each cell (a run that missed a target counts as a miss). Targets per cell from",
             "synchronous FedAvg without delays. Time to loss / accuracy target in seconds; spread: max − min accuracy",
             "over the versions made in the 10 s after the accuracy target (progress counts too); drop: the largest fall",
             "below the best accuracy seen so far in that window (swings only); bytes: model bytes of training both ways",
             "until the accuracy target; CPU: coordinator CPU seconds over the whole run.", "",
             "| cell | pattern | mode | runs | loss target | time to loss | accuracy target | time to accuracy | spread (pt) | drop (pt) | updates to target | MB to target | final accuracy | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["cell"], r["pattern"], r["mode"], f"{r['ok_runs']}/{r['runs']}",
            fmt(r["loss_target"], ".4f"), fmt(r["time_to_loss_target_s"], ".1f", "missed"),
            fmt(r["target"], ".4f"), fmt(r["time_to_target_s"], ".1f", "missed"),
            fmt(None if r["accuracy_window_spread"] is None else r["accuracy_window_spread"] * 100, ".1f"),
            fmt(None if r["accuracy_window_drop"] is None else r["accuracy_window_drop"] * 100, ".1f"),
            fmt(r["updates_to_target"], ".0f"), fmt(None if r["bytes_to_target"] is None else r["bytes_to_target"] / 1e6, ".2f"),
            fmt(r["final_accuracy"], ".4f"), fmt(r["cpu_seconds"], ".1f")]) + " |")
    for subject in subjects:
        checks = conditions(rows, subject)
        lines += ["", f"## {subject}: the four conditions per cell", ""]
        met = 0
        for (cell, pattern), cs in checks.items():
            passed = all(c[0] for c in cs)
            met += passed
            lines.append(f"- **{cell} / {pattern}**: {'all met' if passed else 'not met'} — " + "; ".join(
                ("✓ " if c[0] else "✗ ") + c[1] for c in cs))
        lines += ["", f"{subject}: {met} of {len(checks)} cells meet all four conditions."]
    lines.append("")
    text = "\n".join(lines)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
