#!/usr/bin/env python3
"""Plot and tabulate a Strata aggregation-mode comparison (the output of Deploy/experiment.sh).

Reads OUT/curve-<mode>.csv for every mode (header: mode,elapsed_seconds,version,accuracy,loss,clients,
expected_clients; one row per evaluated global model version, elapsed_seconds = seconds from the
coordinator's start to the creation of that version) and, when present, OUT/summary-<mode>.json.

Writes:
  OUT/accuracy-vs-time.svg, OUT/accuracy-vs-time.png   accuracy vs elapsed seconds, one line per mode,
                                                        the target as a dashed line
  OUT/results.csv, OUT/results.md                      one row per mode (see COLUMNS below)
and prints the markdown table and the acceptance checks:
  (a) strata's time to target <= 1/4 of fedavg's;
  (b) strata's accuracy at equal wall time is at most 0.01 below the best mode's.

A mode whose curve is missing or has no usable row is shown as "failed"; nothing else stops the script.
Exit status: 0 (also when a check fails: the checks are a report), 2 when the plot could not be drawn
(matplotlib unavailable); the tables are written in every case.

Calibration helper (used by experiment.sh to derive the target):
  plot_experiment.py --calibrate CURVE_CSV [--window N]
prints the calibration accuracy: the maximum of the curve's accuracies after a trailing moving average
over N consecutive evaluations (default 5; N = 1 is the raw maximum), rounded to 4 decimals.
"""

import argparse
import csv
import importlib
import json
import math
import os
import site
import subprocess
import sys

COLUMNS = ["mode", "status", "evaluations", "versions", "time_to_target_s", "speedup_vs_fedavg", "speedup_is_lower_bound",
           "final_accuracy", "final_elapsed_s", "accuracy_at_equal_time", "equal_time_s", "best_accuracy",
           "partial_evaluations", "updates_accepted", "updates_refused", "stop_reason",
           "time_to_loss_target_s", "accuracy_window_mean", "accuracy_window_spread", "updates_to_target", "bytes_to_target",
           "cpu_seconds", "accuracy_window_drop"]
# After the (accuracy) target: the accuracy's mean and spread (max - min) over this many seconds of versions.
WINDOW_SECONDS = 10.0

# Fixed colors so a mode keeps its color across plots; strata is drawn thicker.
COLORS = {"fedavg": "#1f77b4", "tifl": "#ff7f0e", "fedat": "#2ca02c", "fedasync": "#9467bd",
          "fedbuff": "#8c564b", "strata": "#d62728"}
EXTRA_COLORS = ["#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"]


# ---------------------------------------------------------------------------------------------- reading

def read_curve(path):
    """Rows of a curve CSV as dicts sorted by (elapsed, version); None if the file is missing.

    Rows with a missing, non-numeric or non-finite elapsed_seconds or accuracy are skipped."""
    if not os.path.isfile(path):
        return None
    rows = []
    try:
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                try:
                    elapsed = float(raw["elapsed_seconds"])
                    accuracy = float(raw["accuracy"])
                except (KeyError, TypeError, ValueError):
                    continue
                if not (math.isfinite(elapsed) and math.isfinite(accuracy)):
                    continue
                rows.append({
                    "elapsed": elapsed,
                    "accuracy": accuracy,
                    "version": _int(raw.get("version")),
                    "loss": _float(raw.get("loss")),
                    "clients": _int(raw.get("clients")),
                    "expected": _int(raw.get("expected_clients")),
                    "updates": _int(raw.get("updates")),
                    "bytes": _int(raw.get("model_bytes")),
                })
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        print(f"warning: cannot read {path}: {error}", file=sys.stderr)
        return []
    rows.sort(key=lambda r: (r["elapsed"], r["version"] if r["version"] is not None else -1))
    return rows


def read_summary(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value):
    try:
        v = float(value)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------------ measurements

def time_to_target(rows, target):
    """First elapsed_seconds whose accuracy >= target, or None."""
    if target is None:
        return None
    for r in rows:
        if r["accuracy"] >= target:
            return r["elapsed"]
    return None


def time_to_loss(rows, target):
    """First elapsed_seconds whose loss <= target, or None."""
    if target is None:
        return None
    for r in rows:
        if r["loss"] is not None and r["loss"] <= target:
            return r["elapsed"]
    return None


def window_after(rows, start, seconds=WINDOW_SECONDS):
    """(mean, max - min, largest drop) of the accuracies of versions created in [start, start + seconds]; the drop
    is the largest fall below the best accuracy seen so far in the window (a swing, not progress). None without any."""
    if start is None:
        return None, None, None
    values = [r["accuracy"] for r in rows if start - 1e-9 <= r["elapsed"] <= start + seconds + 1e-9]
    if not values:
        return None, None, None
    best, drop = -math.inf, 0.0
    for v in values:
        best = max(best, v)
        drop = max(drop, best - v)
    return sum(values) / len(values), max(values) - min(values), drop


def cost_at(rows, t):
    """(updates, model bytes) until the version first reaching a target at t was made (curve columns)."""
    if t is None:
        return None, None
    for r in rows:
        if r["elapsed"] >= t - 1e-9:
            return r["updates"], r["bytes"]
    return None, None


def calibration_loss_target(rows, fraction, window):
    """L* + (1 - fraction) (L0 - L*): L0 the first loss, L* the best trailing moving average of the losses."""
    losses = [r["loss"] for r in rows if r["loss"] is not None and math.isfinite(r["loss"])]
    if not losses:
        return None
    best = -smoothed_max([-x for x in losses], window)
    return best + (1 - fraction) * max(0.0, losses[0] - best)


def accuracy_at(rows, t):
    """Accuracy of the latest evaluated version created at or before t (None if none was)."""
    best = None
    for r in rows:
        if r["elapsed"] <= t + 1e-9:
            best = r["accuracy"]
        else:
            break
    return best


def smoothed_max(accuracies, window):
    """Maximum of the trailing moving average over `window` consecutive values (fewer at the start)."""
    if not accuracies:
        return None
    window = max(1, window)
    best = -math.inf
    total = 0.0
    for i, a in enumerate(accuracies):
        total += a
        if i >= window:
            total -= accuracies[i - window]
        n = min(i + 1, window)
        if i + 1 >= min(window, len(accuracies)):
            best = max(best, total / n)
    return best


def analyse(out, modes, target, exit_statuses, loss_target=None):
    results = []
    for mode in modes:
        rows = read_curve(os.path.join(out, f"curve-{mode}.csv"))
        summary = read_summary(os.path.join(out, f"summary-{mode}.json"))
        r = {"mode": mode, "rows": rows or [], "summary": summary}
        exit_status = exit_statuses.get(mode)
        if rows is None:
            r["status"] = "failed (no curve)"
        elif not rows:
            r["status"] = "failed (empty curve)"
        elif exit_status not in (None, "0"):
            r["status"] = f"error (exit {exit_status})"
        else:
            r["status"] = "ok"
        r["ok"] = bool(rows)
        if r["ok"]:
            versions = [x["version"] for x in rows if x["version"] is not None]
            r["evaluations"] = len(rows)
            r["versions"] = max(versions) if versions else None
            r["time_to_target"] = time_to_target(rows, target)
            r["final_accuracy"] = rows[-1]["accuracy"]
            r["final_elapsed"] = rows[-1]["elapsed"]
            r["best_accuracy"] = max(x["accuracy"] for x in rows)
            r["partial"] = sum(1 for x in rows if x["clients"] is not None and x["expected"] is not None
                               and x["clients"] < x["expected"])
            r["time_to_loss_target"] = time_to_loss(rows, loss_target)
            r["window_mean"], r["window_spread"], r["window_drop"] = window_after(rows, r["time_to_target"])
            r["updates_to_target"], r["bytes_to_target"] = cost_at(rows, r["time_to_target"])
        if summary:
            if isinstance(summary.get("finalVersion"), (int, float)):
                r["versions"] = int(summary["finalVersion"])
            r["updates_accepted"] = summary.get("updatesAccepted")
            r["updates_refused"] = summary.get("updatesRefused")
            r["stop_reason"] = summary.get("reason")
            r["cpu_seconds"] = summary.get("cpuSeconds")
        results.append(r)

    ok = [r for r in results if r["ok"]]
    # A mode that errored (e.g. its coordinator crashed early) would cut every mode's comparison short: the
    # equal wall time is taken over the modes that ran cleanly when there are any.
    clean = [r for r in ok if r["status"] == "ok"] or ok
    equal_time = min(r["final_elapsed"] for r in clean) if clean else None
    for r in ok:
        r["equal_time"] = equal_time
        r["accuracy_at_equal_time"] = accuracy_at(r["rows"], equal_time)

    fedavg = next((r for r in results if r["mode"] == "fedavg"), None)
    for r in ok:
        r["speedup"] = speedup(fedavg, r)
    return results, equal_time


def speedup(fedavg, r):
    """(text, value or None, is_lower_bound): fedavg's time to target / this mode's."""
    if fedavg is None or not fedavg["ok"]:
        return ("-", None, False)
    mine = r.get("time_to_target")
    theirs = fedavg.get("time_to_target")
    if mine is None or mine <= 0:
        # Not reached, or reached by the initial model already (no meaningful ratio).
        return ("-", None, False)
    if theirs is None:
        # fedavg did not reach the target while it ran: its time to target exceeds its last version's time.
        bound = fedavg["final_elapsed"] / mine
        return (f"> {bound:.2f}×", bound, True)
    return (f"{theirs / mine:.2f}×", theirs / mine, False)


# ----------------------------------------------------------------------------------------------- checks

def acceptance(results, target):
    """[(passed, text)] for the issue's two criteria."""
    by_mode = {r["mode"]: r for r in results}
    checks = []
    strata, fedavg = by_mode.get("strata"), by_mode.get("fedavg")

    name = "(a) strata time to target <= 1/4 of fedavg's"
    if target is None:
        checks.append((False, f"{name}: no target given"))
    elif strata is None or not strata["ok"]:
        checks.append((False, f"{name}: strata has no curve"))
    elif strata["status"] != "ok":
        checks.append((False, f"{name}: strata's run ended with an error ({strata['status']})"))
    elif fedavg is None or not fedavg["ok"]:
        checks.append((False, f"{name}: fedavg has no curve"))
    elif strata["time_to_target"] is None:
        checks.append((False, f"{name}: strata did not reach {target:.4f}"))
    elif fedavg["time_to_target"] is None:
        bound = fedavg["final_elapsed"]
        passed = strata["time_to_target"] * 4 <= bound
        checks.append((passed, f"{name}: strata {strata['time_to_target']:.1f} s; fedavg did not reach the "
                               f"target within {bound:.1f} s (speedup > {bound / max(strata['time_to_target'], 1e-9):.2f}×"
                               f"{'' if passed else ', not enough to show 4×'})"))
    else:
        s, f = strata["time_to_target"], fedavg["time_to_target"]
        checks.append((s * 4 <= f, f"{name}: strata {s:.1f} s, fedavg {f:.1f} s, "
                                   f"speedup {f / s:.2f}×" if s > 0 else f"{name}: strata {s:.1f} s, fedavg {f:.1f} s"))

    name = "(b) strata accuracy at equal wall time >= best mode's - 0.01"
    ok = [r for r in results if r["ok"] and r["status"] == "ok" and r.get("accuracy_at_equal_time") is not None]
    if strata is None or not strata["ok"] or strata.get("accuracy_at_equal_time") is None:
        checks.append((False, f"{name}: strata has no accuracy at equal wall time"))
    elif strata["status"] != "ok":
        checks.append((False, f"{name}: strata's run ended with an error ({strata['status']})"))
    else:
        best = max(ok, key=lambda r: r["accuracy_at_equal_time"])
        s = strata["accuracy_at_equal_time"]
        gap = best["accuracy_at_equal_time"] - s
        checks.append((gap <= 0.01 + 1e-12,
                       f"{name}: strata {s:.4f}, best {best['mode']} {best['accuracy_at_equal_time']:.4f} "
                       f"(gap {gap:+.4f}) at t = {strata['equal_time']:.1f} s"))
    return checks


# ----------------------------------------------------------------------------------------------- tables

def fmt(value, spec, none="-"):
    return none if value is None else format(value, spec)


def table_rows(results):
    """Display rows (strings) in COLUMNS order."""
    rows = []
    for r in results:
        if not r["ok"]:
            rows.append([r["mode"], r["status"]] + ["-"] * (len(MD_HEADERS) - 2))
            continue
        ttt = r["time_to_target"]
        rows.append([
            r["mode"], r["status"], str(r["evaluations"]), fmt(r.get("versions"), "d"),
            fmt(ttt, ".1f", "not reached"), r["speedup"][0],
            fmt(r["final_accuracy"], ".4f"), fmt(r["final_elapsed"], ".1f"),
            fmt(r["accuracy_at_equal_time"], ".4f"), fmt(r["equal_time"], ".1f"),
            fmt(r["best_accuracy"], ".4f"), str(r["partial"]),
            fmt(r.get("updates_accepted"), "d"), fmt(r.get("updates_refused"), "d"),
            str(r.get("stop_reason") or "-"),
        ])
    return rows


def write_csv(path, results):
    """Machine-readable: numbers unformatted, empty when not applicable."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in results:
            if not r["ok"]:
                w.writerow([r["mode"], r["status"]] + [""] * (len(COLUMNS) - 2))
                continue
            sp = r["speedup"]
            w.writerow([
                r["mode"], r["status"], r["evaluations"], _blank(r.get("versions")),
                _blank(r["time_to_target"]),
                _blank(round(sp[1], 4) if sp[1] is not None else None), "true" if sp[2] else "false",
                r["final_accuracy"], r["final_elapsed"], _blank(r["accuracy_at_equal_time"]), r["equal_time"],
                r["best_accuracy"], r["partial"], _blank(r.get("updates_accepted")),
                _blank(r.get("updates_refused")), _blank(r.get("stop_reason")),
                _blank(r.get("time_to_loss_target")), _blank(r.get("window_mean")), _blank(r.get("window_spread")),
                _blank(r.get("updates_to_target")), _blank(r.get("bytes_to_target")), _blank(r.get("cpu_seconds")),
                _blank(r.get("window_drop")),
            ])


def _blank(v):
    return "" if v is None else v


MD_HEADERS = ["mode", "status", "evaluations", "versions", "time to target (s)", "speedup vs fedavg",
              "final accuracy", "final at (s)", "accuracy at equal wall time", "equal wall time (s)",
              "best accuracy", "partial evaluations", "updates accepted", "updates refused", "stop reason"]


def markdown(results, target, calibration, equal_time, checks, scenario):
    lines = []
    if scenario:
        lines.append(f"Scenario: {scenario}")
        lines.append("")
    target_text = "none" if target is None else f"{target:.4f}"
    if calibration is not None and target is not None:
        target_text += f" (calibration accuracy {calibration:.4f}; ratio {target / calibration:.3f})" if calibration else ""
    lines.append(f"Target accuracy: {target_text}. Equal wall time: "
                 f"{'-' if equal_time is None else f'{equal_time:.1f} s'} (the earliest time of a mode's last evaluated "
                 f"version, over the modes that ran without error).")
    lines.append("")
    lines.append("| " + " | ".join(MD_HEADERS) + " |")
    lines.append("|" + "|".join("---" for _ in MD_HEADERS) + "|")
    for row in table_rows(results):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines.append("")
    lines.append("Acceptance checks:")
    lines.append("")
    for passed, text in checks:
        lines.append(f"- {'PASS' if passed else 'FAIL'} {text}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- plot

def import_matplotlib():
    """matplotlib with the Agg backend; installs it with pip --user once if missing. None if impossible."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed; installing it with: "
              f"{sys.executable} -m pip install --user matplotlib", file=sys.stderr)
        code = subprocess.call([sys.executable, "-m", "pip", "install", "--user", "--quiet", "matplotlib"])
        if code != 0:
            print("pip could not install matplotlib; install it (pip install --user matplotlib, or the "
                  "python3-matplotlib package) and run this script again", file=sys.stderr)
            return None
        user_site = site.getusersitepackages()
        if user_site not in sys.path:
            site.addsitedir(user_site)
        importlib.invalidate_caches()
        try:
            import matplotlib  # noqa: F401,F811
        except ImportError:
            print("matplotlib was installed but cannot be imported by this interpreter "
                  f"({sys.executable}); run the script again", file=sys.stderr)
            return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(plt, out, results, target, calibration, equal_time, scenario):
    ok = [r for r in results if r["ok"]]
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": [1, 1]})
    extra = iter(EXTRA_COLORS)
    max_t = max((r["final_elapsed"] for r in ok), default=1.0) or 1.0
    for r in results:
        label = r["mode"]
        if not r["ok"]:
            # Keep failed modes visible in the legend.
            full.plot([], [], color="#bbbbbb", linestyle=":", label=f"{label}: {r['status']}")
            continue
        color = COLORS.get(r["mode"]) or next(extra, "#000000")
        t = [x["elapsed"] for x in r["rows"]]
        a = [x["accuracy"] for x in r["rows"]]
        width = 2.4 if r["mode"] == "strata" else 1.4
        z = 3 if r["mode"] == "strata" else 2
        ttt = r["time_to_target"]
        legend = f"{label}: " + (f"target at {ttt:.1f} s" if ttt is not None else "target not reached")
        for ax in (full, zoom):
            ax.step(t, a, where="post", color=color, linewidth=width, zorder=z,
                    label=legend if ax is full else None)
            if ttt is not None:
                ax.plot([ttt], [time_to_target_accuracy(r["rows"], target)], marker="o", markersize=6,
                        color=color, zorder=z + 1)
    for ax in (full, zoom):
        if target is not None:
            text = f"target {target:.4f}"
            if calibration:
                text += f" ({target / calibration:.2f} × calibration {calibration:.4f})"
            ax.axhline(target, color="black", linestyle="--", linewidth=1.1, label=text if ax is full else None)
        if equal_time is not None:
            ax.axvline(equal_time, color="#888888", linestyle=":", linewidth=1.0,
                       label=f"equal wall time {equal_time:.1f} s" if ax is full else None)
        ax.set_xlabel("wall time since coordinator start (s)")
        ax.set_ylabel("test accuracy (sample-weighted over agents)")
        ax.set_xlim(0, max_t * 1.02)
        ax.grid(True, alpha=0.3)
    full.set_ylim(0, 1)
    full.set_title("full range")
    # Zoom: the region around the target and the best accuracies.
    tops = [r["best_accuracy"] for r in ok]
    if tops:
        hi = max(tops + ([target] if target is not None else []))
        lo = (target if target is not None else min(tops)) - 0.08
        zoom.set_ylim(max(0.0, lo), min(1.0, hi + 0.02))
    zoom.set_title("near the target")
    full.legend(loc="lower right", fontsize=8.5, framealpha=0.9)
    fig.suptitle("Accuracy vs wall time" + (f": {scenario}" if scenario else ""), fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(os.path.join(out, "accuracy-vs-time.svg"))
    fig.savefig(os.path.join(out, "accuracy-vs-time.png"), dpi=120)
    plt.close(fig)


def time_to_target_accuracy(rows, target):
    for r in rows:
        if r["accuracy"] >= target:
            return r["accuracy"]
    return None


# ------------------------------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description="Plot and tabulate a Strata aggregation-mode comparison.",
                                epilog="See docs/EXPERIMENTS.md.")
    p.add_argument("--out", help="directory holding curve-<mode>.csv (and summary-<mode>.json); outputs go here")
    p.add_argument("--target", type=float, help="target accuracy (0-1)")
    p.add_argument("--calibration-accuracy", type=float, help="the calibration run's accuracy (for the record)")
    p.add_argument("--modes", nargs="+", help="modes in table order (default: every curve-*.csv in --out)")
    p.add_argument("--scenario", default="", help="one-line scenario description for the title and results.md")
    p.add_argument("--exit-status", nargs="*", default=[], metavar="MODE=CODE",
                   help="the coordinator's exit status per mode; a non-zero one marks the mode 'error'")
    p.add_argument("--calibrate", metavar="CURVE_CSV",
                   help="only print the calibration accuracy of this curve (smoothed maximum) and exit")
    p.add_argument("--window", type=int, default=5,
                   help="moving-average window (evaluations) for --calibrate (default 5; 1 = raw maximum)")
    p.add_argument("--loss-target", type=float, help="target loss: the table's time to loss target")
    p.add_argument("--calibrate-loss", metavar="FRACTION", type=float,
                   help="with --calibrate: print the loss target L* + (1 - FRACTION)(L0 - L*) instead")
    args = p.parse_args(argv)

    if args.calibrate:
        rows = read_curve(args.calibrate)
        if args.calibrate_loss is not None:
            value = calibration_loss_target(rows or [], args.calibrate_loss, args.window)
            if value is None:
                print(f"no usable loss in {args.calibrate}", file=sys.stderr)
                return 1
            print(f"{value:.4f}")
            return 0
        value = smoothed_max([r["accuracy"] for r in rows or []], args.window)
        if value is None:
            print(f"no usable evaluation in {args.calibrate}", file=sys.stderr)
            return 1
        print(f"{value:.4f}")
        return 0

    if not args.out:
        p.error("--out is required")
    if args.target is not None and not (0 <= args.target <= 1):
        p.error("--target must be between 0 and 1")
    modes = args.modes or sorted(f[len("curve-"):-len(".csv")] for f in os.listdir(args.out)
                                 if f.startswith("curve-") and f.endswith(".csv") and f != "curve-calibration.csv")
    if not modes:
        print(f"no modes given and no curve-*.csv in {args.out}", file=sys.stderr)
        return 1
    exit_statuses = dict(item.split("=", 1) for item in args.exit_status if "=" in item)

    results, equal_time = analyse(args.out, modes, args.target, exit_statuses, args.loss_target)
    checks = acceptance(results, args.target)
    md = markdown(results, args.target, args.calibration_accuracy, equal_time, checks, args.scenario)
    write_csv(os.path.join(args.out, "results.csv"), results)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    print(md, end="")

    plt = import_matplotlib()
    if plt is None:
        print("the plot was not drawn (results.csv and results.md were written)", file=sys.stderr)
        return 2
    plot(plt, args.out, results, args.target, args.calibration_accuracy, equal_time, args.scenario)
    print(f"wrote {os.path.join(args.out, 'accuracy-vs-time.svg')}, accuracy-vs-time.png, results.csv, results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
