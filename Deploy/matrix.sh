#!/usr/bin/env bash
# Strata scenario matrix (Deploy/experiment.sh --matrix): every mode on every cell of clients x data x delay
# pattern, with seeds, against targets fixed per (clients, data) by synchronous FedAvg without delays.
#
# For each clients count C and data setting (alpha, beta): one calibration (experiment.sh with
# STRATA_CALIBRATION_ONLY=1: fedavg, no added delays) fixes the accuracy target (STRATA_TARGET_FRACTION x its
# best moving-average accuracy) and the loss target (that fraction of the way from its first loss to its best
# moving-average loss). Then, for each delay pattern and seed, experiment.sh runs every mode with those targets.
# Finally Deploy/matrix_table.py writes one table over all cells (every cell, misses included) and the
# issue's four conditions for strata per cell. Every process started is stopped when it ends.
#
# Environment (defaults: the issue's full matrix, many hours on 2 cores; see docs/EXPERIMENTS.md):
#   STRATA_MATRIX_CLIENTS ("10 30 100")
#   STRATA_MATRIX_DATA ("0,0 0.5,0.5 1,1")         alpha,beta of Synthetic(alpha, beta)
#   STRATA_MATRIX_PATTERNS ("groups lognormal slow-tier churn")
#       groups: three groups with task delays 0 / 0.5 / 2 s; lognormal: delay 0.5 * exp(1.0 z) s per agent (a long
#       tail); slow-tier: the last 20 % of the agents 10 s, the rest 0; churn: groups, and every 10 s one agent
#       stops and comes back 5 s later
#   STRATA_MATRIX_RUNS (3)                          runs per cell (same data, seed 1; timing differs run to run)
#   STRATA_MODES ("fedavg fedbuff strata")           modes per cell
#   STRATA_DURATION (120)                           seconds per mode and cell
#   STRATA_MATRIX_OUT (docs/experiments/matrix)     results.md, results.csv, and one folder per cell
#   STRATA_MATRIX_RUN (run/matrix)                  data, PKIs, logs (deleted at start)
#   STRATA_MATRIX_FIRST_RUN (1)                     number of the first run (to add runs to an earlier matrix)
#   STRATA_MATRIX_TARGETS_FROM (unset)              a matrix output folder whose calibration.json files give the
#                                                   targets (no calibration runs: the added runs share its targets;
#                                                   its calibrations must have used the same STRATA_TEST_MULTIPLE)
#   STRATA_TEST_MULTIPLE (20)                       test rows per client, times the held-out rows (strata-datagen
#                                                   --test-multiple): with 1, 10 clients' ~220 test rows move
#                                                   accuracy in steps of 0.45 points, too coarse for the 1-point
#                                                   spread condition
#   and every other variable of experiment.sh (STRATA_COORDINATOR_FLAGS, STRATA_BIN, ...).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "matrix.sh: error: $*" >&2; exit 1; }

read -r -a clients_list <<< "${STRATA_MATRIX_CLIENTS:-10 30 100}"
read -r -a data_list <<< "${STRATA_MATRIX_DATA:-0,0 0.5,0.5 1,1}"
read -r -a patterns <<< "${STRATA_MATRIX_PATTERNS:-groups lognormal slow-tier churn}"
runs=${STRATA_MATRIX_RUNS:-3}
first_run=${STRATA_MATRIX_FIRST_RUN:-1}
targets_from=${STRATA_MATRIX_TARGETS_FROM:-}
export STRATA_TEST_MULTIPLE=${STRATA_TEST_MULTIPLE:-20}
modes=${STRATA_MODES:-fedavg fedbuff strata}
duration=${STRATA_DURATION:-120}
out=${STRATA_MATRIX_OUT:-docs/experiments/matrix}
run=${STRATA_MATRIX_RUN:-run/matrix}

for c in "${clients_list[@]}"; do [[ $c =~ ^[0-9]+$ ]] && [ "$c" -ge 3 ] || die "STRATA_MATRIX_CLIENTS: '$c' is not a count of at least 3"; done
for d in "${data_list[@]}"; do [[ $d =~ ^[0-9.]+,[0-9.]+$ ]] || die "STRATA_MATRIX_DATA: '$d' is not alpha,beta"; done
for p in "${patterns[@]}"; do
    case "$p" in groups|lognormal|slow-tier|churn) ;; *) die "STRATA_MATRIX_PATTERNS: unknown pattern '$p'" ;; esac
done
[[ $runs =~ ^[0-9]+$ ]] && [ "$runs" -ge 1 ] || die "STRATA_MATRIX_RUNS must be a positive integer"
[[ $first_run =~ ^[0-9]+$ ]] && [ "$first_run" -ge 1 ] || die "STRATA_MATRIX_FIRST_RUN must be a positive integer"
[ -z "$targets_from" ] || [ -d "$targets_from" ] || die "STRATA_MATRIX_TARGETS_FROM=$targets_from is not a folder"

# Build once (experiment.sh would build per call); every call below uses these programs.
if [ -z "${STRATA_BIN:-}" ]; then
    say "building (${STRATA_CONFIG:-release})"
    for product in strata-coordinator strata-agent strata-datagen; do swift build -c "${STRATA_CONFIG:-release}" --product "$product" >/dev/null; done
    export STRATA_BIN=$(swift build -c "${STRATA_CONFIG:-release}" --show-bin-path)
fi
rm -rf "$run"
mkdir -p "$out" "$run"
# (With STRATA_MATRIX_FIRST_RUN > 1 the earlier runs' results in $out stay: the table takes the median of all.)
cells=$(( ${#clients_list[@]} * ${#data_list[@]} * ${#patterns[@]} * runs ))
set -- $modes
say "$cells cells x $# modes x ${duration} s: about $(( cells * $# * (${duration%.*} + 10) / 60 + 1 )) min plus calibrations"

pattern_env() {
    case "$1" in
        groups) echo "STRATA_DELAY_PATTERN=groups STRATA_CHURN=0" ;;
        lognormal) echo "STRATA_DELAY_PATTERN=lognormal:0.5:1.0 STRATA_CHURN=0" ;;
        slow-tier) echo "STRATA_DELAY_PATTERN=slow-tier:10:0.2 STRATA_CHURN=0" ;;
        churn) echo "STRATA_DELAY_PATTERN=groups STRATA_CHURN=10" ;;
    esac
}

failures=0
for c in "${clients_list[@]}"; do
    for d in "${data_list[@]}"; do
        alpha=${d%,*} beta=${d#*,}
        base="c$c-a$alpha-b$beta"
        if [ -n "$targets_from" ]; then
            mkdir -p "$out/$base/calibration"
            [ "$(realpath "$targets_from")" = "$(realpath "$out")" ] \
                || cp "$targets_from/$base/calibration/calibration.json" "$out/$base/calibration/" \
                || { echo "no $targets_from/$base/calibration/calibration.json" >&2; failures=$((failures + 1)); continue; }
        else
            say "calibration for $c clients, Synthetic($alpha,$beta)"
            STRATA_CLIENTS=$c STRATA_ALPHA=$alpha STRATA_BETA=$beta STRATA_SEED=1 STRATA_CALIBRATION_ONLY=1 \
                STRATA_OUT="$out/$base/calibration" STRATA_RUN_DIR="$run/$base/calibration" \
                "$repo/Deploy/experiment.sh" > "$run/$base-calibration.log" 2>&1 || { echo "calibration failed: $run/$base-calibration.log" >&2; failures=$((failures + 1)); continue; }
        fi
        read -r target loss_target < <(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['target'], c['lossTarget'] if c['lossTarget'] is not None else '')" "$out/$base/calibration/calibration.json")
        say "targets: accuracy $target, loss ${loss_target:-none}"
        for p in "${patterns[@]}"; do
            for s in $(seq "$first_run" $(( first_run + runs - 1 ))); do
                cell="$base/$p/run-$s"
                printf '\033[1m==> %s …\033[0m ' "$cell"
                # shellcheck disable=SC2046  # pattern_env's words are NAME=VALUE without spaces
                if env $(pattern_env "$p") STRATA_DELAYS="0 0.5 2" STRATA_CLIENTS="$c" STRATA_ALPHA="$alpha" STRATA_BETA="$beta" \
                        STRATA_SEED=1 STRATA_TARGET="$target" STRATA_LOSS_TARGET="$loss_target" STRATA_DURATION="$duration" \
                        STRATA_MODES="$modes" STRATA_OUT="$out/$cell" STRATA_RUN_DIR="$run/$cell" \
                        "$repo/Deploy/experiment.sh" > "$run/${cell//\//-}.log" 2>&1; then
                    echo "done"
                else
                    echo "FAILED (log: $run/${cell//\//-}.log)"; failures=$((failures + 1))
                fi
            done
        done
    done
done

say "matrix table"
python3 Deploy/matrix_table.py --out "$out" --modes $modes
[ "$failures" -eq 0 ] || { echo "$failures cell(s) failed; see their logs in $run" >&2; exit 1; }
