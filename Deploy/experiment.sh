#!/usr/bin/env bash
# Strata experiment: compare the coordinator's aggregation modes on one federation at equal wall time.
#
# Installs the system libraries and matplotlib if missing, builds in release mode, makes Synthetic(1,1) data
# and a dev PKI once, and then, on this machine over mutual TLS on loopback:
#   1. calibration: mode fedavg with no added delays for STRATA_CALIBRATION_ROUNDS rounds (at most
#      STRATA_CALIBRATION_SECONDS); the calibration
#      accuracy is the highest moving average over STRATA_CALIBRATION_WINDOW consecutive evaluations of
#      that curve, and the target is STRATA_TARGET_FRACTION x that (skipped when STRATA_TARGET is set);
#   2. for each mode, a fresh coordinator (--mode M, no --target-accuracy: every mode runs the full
#      STRATA_DURATION) and all agents, the agents split into equal groups by client index, group g
#      with --task-delay = the g-th value of STRATA_DELAYS (plus --task-jitter, --emulation-seed = index);
#   3. Deploy/plot_experiment.py: accuracy-vs-time plot, results table, acceptance checks.
# See docs/EXPERIMENTS.md. Every process it starts is stopped when it ends, however it ends.
# Exit status: 0 every mode produced a curve and the plot was drawn; 1 otherwise (the other modes still
# run and are plotted); 64 bad arguments. The acceptance checks are reported, not turned into a status.
#
# Usage: Deploy/experiment.sh [--quick | --matrix]
#   --matrix: every cell of the scenario matrix (clients x data x delay pattern) for every mode and seed, one
#   calibration per (clients, data); see Deploy/matrix.sh for its variables and docs/EXPERIMENTS.md.
#   --quick (or STRATA_QUICK=1): smoke check, 9 clients, 20 s per mode, 15 s calibration, results in
#   STRATA_RUN_DIR/results (not in docs/) unless STRATA_OUT is set.
#
# Environment (default in parentheses; --quick changes the ones marked *):
#   STRATA_CLIENTS* (30)            agents / client databases
#   STRATA_SEED (1)                 strata-datagen --seed
#   STRATA_ALPHA, STRATA_BETA (1, 1)  Synthetic(alpha, beta): how far the clients' models and data differ
#   STRATA_TEST_MULTIPLE (1)        strata-datagen --test-multiple: each client's test set this many times its
#                                   held-out rows (training rows unchanged; finer accuracy, e.g. 20 for 10 clients)
#   STRATA_DELAYS ("0 0.5 2")       --task-delay per group, seconds; one group per value
#   STRATA_DELAY_PATTERN (groups)   groups: STRATA_DELAYS by client group; lognormal:MEDIAN:SIGMA: client i's
#                                   delay MEDIAN * exp(SIGMA * z_i), z_i standard normal seeded by i (a long
#                                   tail); slow-tier:SECONDS:FRACTION: the last FRACTION of the clients SECONDS,
#                                   the others 0
#   STRATA_CHURN (0)                seconds: every CHURN s one agent (round robin) is stopped, and started
#                                   again CHURN/2 s later with its state (agents that come and go)
#   STRATA_JITTER (0.05)            --task-jitter, seconds, every agent
#   STRATA_SLOWDOWNS (unset)        optional --slowdown factor per group, e.g. "1 1 3"
#   STRATA_MODES ("fedavg tifl fedat fedasync fedbuff strata")
#                                   a mode may be MODE@VARIANT: the same --mode with the flags of
#                                   STRATA_FLAGS_MODE_VARIANT, e.g. strata@q8 with STRATA_FLAGS_STRATA_Q8="--update-encoding q8"
#   STRATA_DURATION* (300)          seconds per mode (--max-duration)
#   STRATA_EVAL_INTERVAL (0.5)      --evaluate-interval, seconds
#   STRATA_CALIBRATION_ROUNDS* (200)  rounds (versions) of the calibration run: FedProx's protocol length
#   STRATA_CALIBRATION_SECONDS* (120)  STRATA_CALIBRATION_MODE (fedavg)  STRATA_CALIBRATION_WINDOW (5)
#   STRATA_TARGET_FRACTION (0.97)   target = fraction x calibration accuracy
#   STRATA_TARGET (unset)           fixed target accuracy 0-1; skips the calibration run
#   STRATA_LOSS_TARGET (unset)      fixed target loss; else from the calibration: its first loss L0 and best
#                                   moving-average loss L*, target L* + (1 - STRATA_TARGET_FRACTION)(L0 - L*)
#   STRATA_CALIBRATION_ONLY (0)     1: run the calibration, write OUT/calibration.json, stop (for --matrix)
#   STRATA_FLAGS_<MODE>             extra coordinator flags for one mode (upper case, '-' as '_'), e.g.
#                                   STRATA_FLAGS_FEDAVG="--clients-per-round 0"; also used for calibration.
#                                   Default STRATA_FLAGS_FEDASYNC="--max-staleness 1000": FedAsync counts one
#                                   version per update, so at the default limit (100) every update of the 2 s
#                                   group would be refused as too stale
#   STRATA_COORDINATOR_FLAGS, STRATA_AGENT_FLAGS   extra flags for every coordinator / agent
#   STRATA_OUT* (docs/experiments/default)         curves, summaries, plot, tables
#   STRATA_RUN_DIR* (run/experiment)               data, PKI, state databases, logs (deleted at start)
#   STRATA_GRACE (90)               seconds past the duration before a coordinator is stopped as hung
#   STRATA_CONFIG (release)         swift build configuration
#   STRATA_BIN (unset)              use the programs in this directory and skip the build
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "experiment.sh: error: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

quick=${STRATA_QUICK:-0}
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --matrix) exec "$repo/Deploy/matrix.sh" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "experiment.sh: unknown argument '$arg' (see --help)" >&2; exit 64 ;;
    esac
done
if [ "$quick" = 1 ]; then
    run_dir=${STRATA_RUN_DIR:-run/experiment-quick}
    out=${STRATA_OUT:-$run_dir/results}
    clients=${STRATA_CLIENTS:-9}
    duration=${STRATA_DURATION:-20}
    calibration_seconds=${STRATA_CALIBRATION_SECONDS:-15}
    calibration_rounds=${STRATA_CALIBRATION_ROUNDS:-100}
else
    run_dir=${STRATA_RUN_DIR:-run/experiment}
    out=${STRATA_OUT:-docs/experiments/default}
    clients=${STRATA_CLIENTS:-30}
    duration=${STRATA_DURATION:-300}
    calibration_seconds=${STRATA_CALIBRATION_SECONDS:-120}
    calibration_rounds=${STRATA_CALIBRATION_ROUNDS:-200}
fi
seed=${STRATA_SEED:-1}
test_multiple=${STRATA_TEST_MULTIPLE:-1}
alpha=${STRATA_ALPHA:-1}
beta=${STRATA_BETA:-1}
delay_pattern=${STRATA_DELAY_PATTERN:-groups}
churn=${STRATA_CHURN:-0}
fixed_loss_target=${STRATA_LOSS_TARGET:-}
calibration_only=${STRATA_CALIBRATION_ONLY:-0}
read -r -a delays <<< "${STRATA_DELAYS:-0 0.5 2}"
read -r -a slowdowns <<< "${STRATA_SLOWDOWNS:-}"
jitter=${STRATA_JITTER:-0.05}
read -r -a modes <<< "${STRATA_MODES:-fedavg tifl fedat fedasync fedbuff strata}"
eval_interval=${STRATA_EVAL_INTERVAL:-0.5}
calibration_mode=${STRATA_CALIBRATION_MODE:-fedavg}
export STRATA_FLAGS_FEDASYNC=${STRATA_FLAGS_FEDASYNC---max-staleness 1000}
calibration_window=${STRATA_CALIBRATION_WINDOW:-5}
target_fraction=${STRATA_TARGET_FRACTION:-0.97}
fixed_target=${STRATA_TARGET:-}
grace=${STRATA_GRACE:-90}
config=${STRATA_CONFIG:-release}
read -r -a coordinator_flags <<< "${STRATA_COORDINATOR_FLAGS:-}"
read -r -a agent_flags <<< "${STRATA_AGENT_FLAGS:-}"

# ---- checks on the settings, before anything is installed or started
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
if ! [[ $clients =~ ^[0-9]+$ ]] || [ "$clients" -lt 1 ]; then die "STRATA_CLIENTS must be a positive integer (got '$clients')"; fi
[[ $seed =~ ^[0-9]+$ ]] || die "STRATA_SEED must be a non-negative integer"
[[ $test_multiple =~ ^[0-9]+$ ]] && [ "$test_multiple" -ge 1 ] || die "STRATA_TEST_MULTIPLE must be a positive integer"
[ ${#delays[@]} -ge 1 ] || die "STRATA_DELAYS must list at least one delay"
[ ${#delays[@]} -le "$clients" ] || die "STRATA_DELAYS has more groups (${#delays[@]}) than there are clients ($clients)"
for d in "${delays[@]}" "$jitter" "$eval_interval" "$target_fraction"; do
    is_number "$d" || die "'$d' is not a non-negative number (STRATA_DELAYS, STRATA_JITTER, STRATA_EVAL_INTERVAL, STRATA_TARGET_FRACTION)"
done
if [ ${#slowdowns[@]} -gt 0 ]; then
    [ ${#slowdowns[@]} -eq ${#delays[@]} ] || die "STRATA_SLOWDOWNS needs one factor per STRATA_DELAYS group (${#delays[@]})"
    for s in "${slowdowns[@]}"; do is_number "$s" || die "STRATA_SLOWDOWNS: '$s' is not a number"; done
fi
for x in "$alpha" "$beta" "$churn"; do is_number "$x" || die "STRATA_ALPHA, STRATA_BETA and STRATA_CHURN must be non-negative numbers (got '$x')"; done
case "$delay_pattern" in
    groups) ;;
    lognormal:*:*) is_number "$(echo "$delay_pattern" | cut -d: -f2)" && is_number "$(echo "$delay_pattern" | cut -d: -f3)" \
                       || die "STRATA_DELAY_PATTERN=lognormal:MEDIAN:SIGMA takes two non-negative numbers (got '$delay_pattern')" ;;
    slow-tier:*:*) is_number "$(echo "$delay_pattern" | cut -d: -f2)" && is_number "$(echo "$delay_pattern" | cut -d: -f3)" \
                       || die "STRATA_DELAY_PATTERN=slow-tier:SECONDS:FRACTION takes two non-negative numbers (got '$delay_pattern')" ;;
    *) die "STRATA_DELAY_PATTERN must be groups, lognormal:MEDIAN:SIGMA or slow-tier:SECONDS:FRACTION (got '$delay_pattern')" ;;
esac
[ -z "$fixed_loss_target" ] || is_number "$fixed_loss_target" || die "STRATA_LOSS_TARGET must be a non-negative number"
for s in "$duration" "$calibration_seconds" "$grace"; do
    if ! is_number "$s" || [ "$(awk -v x="$s" 'BEGIN { print (x > 0) }')" != 1 ]; then
        die "STRATA_DURATION, STRATA_CALIBRATION_SECONDS and STRATA_GRACE must be positive numbers (got '$s')"
    fi
done
if ! [[ $calibration_rounds =~ ^[0-9]+$ ]] || [ "$calibration_rounds" -lt 1 ]; then die "STRATA_CALIBRATION_ROUNDS must be a positive integer"; fi
if ! [[ $calibration_window =~ ^[0-9]+$ ]] || [ "$calibration_window" -lt 1 ]; then die "STRATA_CALIBRATION_WINDOW must be a positive integer"; fi
[ ${#modes[@]} -ge 1 ] || die "STRATA_MODES is empty"
for m in "${modes[@]}" "$calibration_mode"; do
    [[ $m =~ ^[a-z0-9][a-z0-9_-]*(@[a-z0-9][a-z0-9_-]*)?$ ]] || die "mode names are lower-case words, optionally MODE@VARIANT (got '$m')"
done
if [ -n "$fixed_target" ]; then
    if ! is_number "$fixed_target" || [ "$(awk -v x="$fixed_target" 'BEGIN { print (x <= 1) }')" != 1 ]; then
        die "STRATA_TARGET must be an accuracy between 0 and 1 (got '$fixed_target')"
    fi
fi
run_abs=$(realpath -m "$run_dir")
case "$repo/" in "$run_abs"/*) die "refusing STRATA_RUN_DIR='$run_dir': it is deleted at start and holds this repository" ;; esac
case "$run_abs" in /|"$HOME") die "refusing STRATA_RUN_DIR='$run_dir' (it is deleted at start)" ;; esac

# ---- 1. System libraries, and matplotlib for the plot (checked now so a long run never fails at its end)
missing=()
for pkg in libssl-dev libsqlite3-dev unixodbc-dev openssl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    say "installing $*"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
if ! python3 -c 'import matplotlib' >/dev/null 2>&1; then
    say "installing matplotlib (pip install --user matplotlib)"
    python3 -m pip install --user --quiet matplotlib \
        || python3 -m pip install --quiet matplotlib \
        || { [ "$(command -v python3)" = /usr/bin/python3 ] && apt_install python3-matplotlib; } \
        || true
    python3 -c 'import matplotlib' >/dev/null 2>&1 \
        || die "matplotlib cannot be installed for $(command -v python3); install it (pip install --user matplotlib) and run again"
fi

# ---- 2. Build (or use STRATA_BIN).
if [ -n "${STRATA_BIN:-}" ]; then
    [ -d "$STRATA_BIN" ] || die "STRATA_BIN=$STRATA_BIN is not a directory"
    bin=$(cd "$STRATA_BIN" && pwd)
    say "using the programs in $bin (no build)"
else
    say "building ($config)"
    swift build -c "$config" --product strata-coordinator >/dev/null
    swift build -c "$config" --product strata-agent >/dev/null
    swift build -c "$config" --product strata-datagen >/dev/null
    bin=$(swift build -c "$config" --show-bin-path)
fi
for program in strata-coordinator strata-agent strata-datagen; do
    [ -x "$bin/$program" ] || die "$bin/$program is missing"
done

# ---- 3. A fresh run folder with data and a dev PKI, shared by every run; old outputs removed.
rm -rf "$run_dir"
mkdir -p "$run_dir" "$out"
rm -f "$out"/curve-*.csv "$out"/summary-*.json "$out"/results.csv "$out"/results.md \
      "$out"/accuracy-vs-time.svg "$out"/accuracy-vs-time.png "$out"/experiment.json
say "generating Synthetic($alpha,$beta) data for $clients clients (seed $seed)"
"$bin/strata-datagen" --out "$run_dir/data" --clients "$clients" --alpha "$alpha" --beta "$beta" --seed "$seed" \
    --test-multiple "$test_multiple" >"$run_dir/datagen.log" 2>&1 || { tail -n 5 "$run_dir/datagen.log" >&2; die "strata-datagen failed; see $run_dir/datagen.log"; }
tail -n 1 "$run_dir/datagen.log"
say "creating a dev PKI in $run_dir/pki"
Certs/strata-pki.sh --dir "$run_dir/pki" dev --agents "$clients" >"$run_dir/pki.log" 2>&1 \
    || { tail -n 5 "$run_dir/pki.log" >&2; die "Certs/strata-pki.sh failed; see $run_dir/pki.log"; }

# Client i (1-based): certificate agent-%02d (strata-pki.sh), database client-<i zero-padded to
# max(2, digits of N)> (strata-datagen), group floor((i-1) * groups / N).
width=$(( ${#clients} > 2 ? ${#clients} : 2 ))
agent_id() { printf 'agent-%02d' "$1"; }
client_db() { printf "%s/data/client-%0${width}d.sqlite" "$run_dir" "$1"; }
group_of() { echo $(( ($1 - 1) * ${#delays[@]} / clients )); }
# The task delay of every client (index 1..N; [0] unused), by STRATA_DELAY_PATTERN.
read -r -a agent_delay <<< "$(python3 - "$delay_pattern" "$clients" "${delays[@]}" <<'PY'
import math, random, sys
pattern, n, groups = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out = [0.0]
for i in range(1, n + 1):
    if pattern == "groups":
        out.append(float(groups[(i - 1) * len(groups) // n]))
    elif pattern.startswith("lognormal:"):
        _, median, sigma = pattern.split(":")
        out.append(round(float(median) * math.exp(float(sigma) * random.Random(i).gauss(0, 1)), 3))
    else:
        _, seconds, fraction = pattern.split(":")
        slow = max(1, round(float(fraction) * n))
        out.append(float(seconds) if i > n - slow else 0.0)
print(" ".join(str(d) for d in out))
PY
)"
for i in $(seq 1 "$clients"); do
    [ -f "$(client_db "$i")" ] || die "$(client_db "$i") was not written by strata-datagen"
    [ -f "$run_dir/pki/agents/$(agent_id "$i").crt" ] || die "$run_dir/pki/agents/$(agent_id "$i").crt was not issued"
done

# ---- Processes: every pid started is in `pids` until it has been waited for; all are stopped on exit.
pids=()
stop_pids() {
    # TERM, up to 10 s to exit, then KILL; reaps them all.
    local pid alive
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}
cleanup() {
    if [ ${#pids[@]} -gt 0 ]; then stop_pids "${pids[@]}"; pids=(); fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_federation LABEL MODE SECONDS EMULATE: one coordinator + all agents; logs in RUN/LABEL; the curve and
# summary in OUT/curve-LABEL.csv, OUT/summary-LABEL.json. Sets `status` (the coordinator's exit status, or
# 124 when it had to be stopped, or 125 when it never listened) and `note`.
run_federation() {
    local label=$1 mode=$2 seconds=$3 emulate=$4
    local dir="$run_dir/$label" curve="$out/curve-$label.csv" summary="$out/summary-$label.json"
    local var extra=() coordinator host port i g deadline
    local -a agent_args=() agent_pid=()
    rm -rf "$dir"; mkdir -p "$dir"
    rm -f "$curve" "$summary"
    # Flags by label (MODE@VARIANT has its own: STRATA_FLAGS_MODE_VARIANT); the calibration takes its mode's.
    local flags_of=$label
    [ "$label" != calibration ] || flags_of=$mode
    var="STRATA_FLAGS_$(printf '%s' "$flags_of" | tr 'a-z@-' 'A-Z__')"
    read -r -a extra <<< "${!var:-}"
    [ "$label" != calibration ] || extra+=(--max-versions "$calibration_rounds")
    status=0 note=""

    "$bin/strata-coordinator" \
        --cert "$run_dir/pki/coordinator.crt" --key "$run_dir/pki/coordinator.key" --ca "$run_dir/pki/ca.crt" \
        --state "$dir/coordinator.sqlite" --port 0 --ready-file "$dir/coordinator.addr" \
        --features 60 --classes 10 --mode "$mode" --max-duration "$seconds" --min-clients "$clients" \
        --evaluate-interval "$eval_interval" --curve-csv "$curve" --summary-file "$summary" \
        ${coordinator_flags[@]+"${coordinator_flags[@]}"} ${extra[@]+"${extra[@]}"} \
        >"$dir/coordinator.out" 2>"$dir/coordinator.log" &
    coordinator=$!
    pids=("$coordinator")
    for _ in $(seq 1 300); do
        [ -s "$dir/coordinator.addr" ] && break
        kill -0 "$coordinator" 2>/dev/null || break
        sleep 0.1
    done
    if ! [ -s "$dir/coordinator.addr" ]; then
        if kill -0 "$coordinator" 2>/dev/null; then
            note="the coordinator did not listen within 30 s"; stop_pids "$coordinator"; status=125
        else
            wait "$coordinator" && status=0 || status=$?
            note="the coordinator exited at start (status $status): $(tail -n 1 "$dir/coordinator.log" 2>/dev/null)"
            [ "$status" -ne 0 ] || status=125
        fi
        pids=()
        return 0
    fi
    read -r host port < "$dir/coordinator.addr"

    for i in $(seq 1 "$clients"); do
        local emulation=()
        if [ "$emulate" = 1 ]; then
            g=$(group_of "$i")
            emulation=(--task-delay "${agent_delay[$i]}" --task-jitter "$jitter" --emulation-seed "$i")
            [ ${#slowdowns[@]} -eq 0 ] || emulation+=(--slowdown "${slowdowns[$g]}")
        fi
        agent_args[$i]="--coordinator $host:$port --server-name localhost --cert $run_dir/pki/agents/$(agent_id "$i").crt --key $run_dir/pki/agents/$(agent_id "$i").key --ca $run_dir/pki/ca.crt --database $(client_db "$i") --state $dir/$(agent_id "$i").state.sqlite --after-federation exit ${emulation[*]} ${agent_flags[*]}"
        # shellcheck disable=SC2086  # the arguments hold no spaces (paths of this run)
        "$bin/strata-agent" ${agent_args[$i]} >"$dir/$(agent_id "$i").log" 2>&1 &
        pids+=("$!")
        agent_pid[$i]=$!
    done

    # Wait for the coordinator to stop by itself (--max-duration); stop it if it hangs. With churn (not in the
    # calibration), every CHURN s one agent is stopped and started again CHURN/2 s later.
    deadline=$(( SECONDS + ${seconds%.*} + ${grace%.*} + 1 ))
    local churn_next=0 churn_agent=0 churn_back=0 churn_index=0
    if [ "$emulate" = 1 ] && [ "$(awk -v x="$churn" 'BEGIN { print (x > 0) }')" = 1 ]; then churn_next=$(( SECONDS + ${churn%.*} )); fi
    while kill -0 "$coordinator" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            note="the coordinator was still running ${grace%.*} s after its duration; stopped"
            stop_pids "$coordinator"; status=124
            break
        fi
        if [ "$churn_next" -gt 0 ] && [ "$churn_agent" = 0 ] && [ "$SECONDS" -ge "$churn_next" ]; then
            churn_agent=$(( churn_index % clients + 1 )); churn_index=$(( churn_index + 1 ))
            stop_pids "${agent_pid[$churn_agent]}"
            churn_back=$(( SECONDS + (${churn%.*} + 1) / 2 ))
            echo "churn: agent $churn_agent stopped at ${SECONDS}s" >>"$dir/churn.log"
        fi
        if [ "$churn_agent" != 0 ] && [ "$SECONDS" -ge "$churn_back" ]; then
            # shellcheck disable=SC2086
            "$bin/strata-agent" ${agent_args[$churn_agent]} >>"$dir/$(agent_id "$churn_agent").log" 2>&1 &
            agent_pid[$churn_agent]=$!
            pids+=("$!")
            echo "churn: agent $churn_agent started again at ${SECONDS}s" >>"$dir/churn.log"
            churn_agent=0
            churn_next=$(( SECONDS + ${churn%.*} ))
        fi
        sleep 1
    done
    if [ "$status" -eq 0 ]; then
        wait "$coordinator" && status=0 || status=$?
        [ "$status" -eq 0 ] || note="the coordinator exited with status $status: $(tail -n 1 "$dir/coordinator.log" 2>/dev/null)"
    fi
    stop_pids "${pids[@]:1}"
    pids=()
    return 0
}

# curve_stats CSV: "ROWS MAX_VERSION BEST_ACCURACY LAST_ACCURACY" (columns by header name).
curve_stats() {
    [ -s "$1" ] || { echo "0 - - -"; return; }
    awk -F, 'NR == 1 { for (c = 1; c <= NF; c++) col[$c] = c; next }
             NF > 1 { n++; v = $col["version"] + 0; a = $col["accuracy"] + 0
                      if (v > maxv) maxv = v; if (n == 1 || a > best) best = a; last = a }
             END { if (n) printf "%d %d %.4f %.4f\n", n, maxv, best, last; else print "0 - - -" }' "$1"
}

start_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)
estimate=$(( ${duration%.*} * ${#modes[@]} + ${#modes[@]} * 5 ))
[ -n "$fixed_target" ] || estimate=$(( estimate + ${calibration_seconds%.*} + 5 ))
say "$clients agents, delay groups (${delays[*]}) s, jitter $jitter s; modes: ${modes[*]}; about $(( estimate / 60 + 1 )) min"

# ---- 4. Calibration: the target accuracy.
calibration_accuracy=""
if [ -n "$fixed_target" ]; then
    target=$fixed_target
    say "target accuracy $target (STRATA_TARGET; no calibration run)"
else
    printf '\033[1m==> calibration: %s without added delays, %s rounds (at most %s s) …\033[0m ' "$calibration_mode" "$calibration_rounds" "$calibration_seconds"
    run_federation calibration "$calibration_mode" "$calibration_seconds" 0
    read -r rows versions best last <<< "$(curve_stats "$out/curve-calibration.csv")"
    echo "$versions versions, $rows evaluations, best accuracy $best, last $last"
    [ "$status" -eq 0 ] || echo "calibration: $note" >&2
    calibration_accuracy=$(python3 Deploy/plot_experiment.py --calibrate "$out/curve-calibration.csv" \
                           --window "$calibration_window") \
        || die "the calibration run produced no usable curve (logs in $run_dir/calibration); set STRATA_TARGET to skip it"
    target=$(python3 -c "import sys; print(round(float(sys.argv[1]) * float(sys.argv[2]), 4))" "$target_fraction" "$calibration_accuracy")
    say "calibration accuracy $calibration_accuracy (best moving average over $calibration_window evaluations); target $target_fraction x that = $target"
fi
loss_target=$fixed_loss_target
if [ -z "$loss_target" ] && [ -s "$out/curve-calibration.csv" ]; then
    loss_target=$(python3 Deploy/plot_experiment.py --calibrate "$out/curve-calibration.csv" --window "$calibration_window" \
                  --calibrate-loss "$target_fraction") || loss_target=""
    [ -z "$loss_target" ] || say "loss target $loss_target (the calibration's first loss, $target_fraction of the way to its best moving average)"
fi
if [ "$calibration_only" = 1 ]; then
    printf '{"accuracy": %s, "target": %s, "lossTarget": %s}\n' "${calibration_accuracy:-null}" "$target" "${loss_target:-null}" \
        > "$out/calibration.json"
    say "calibration only: $out/calibration.json"
    exit 0
fi

# ---- 5. Every mode, the same scenario, the same duration.
failed=()
statuses=()
index=0
for mode in "${modes[@]}"; do
    index=$(( index + 1 ))
    printf '\033[1m==> [%d/%d] %s for %s s …\033[0m ' "$index" "${#modes[@]}" "$mode" "$duration"
    run_federation "$mode" "${mode%%@*}" "$duration" 1
    read -r rows versions best last <<< "$(curve_stats "$out/curve-$mode.csv")"
    statuses+=("$mode=$status")
    if [ "$status" -ne 0 ] || [ "$rows" = 0 ]; then
        [ -n "$note" ] || note="no evaluation in $out/curve-$mode.csv"
        echo "FAILED: $note (logs in $run_dir/$mode)"
        failed+=("$mode")
    else
        echo "$versions versions, $rows evaluations, best accuracy $best, last $last"
    fi
done

# ---- 6. Record the settings, plot, tabulate.
groups_text=$(printf '%s/' "${delays[@]}"); groups_text=${groups_text%/}
delay_text="task delays ${groups_text} s by client group"
[ "$delay_pattern" = groups ] || delay_text="task delays $delay_pattern"
[ "$(awk -v x="$churn" 'BEGIN { print (x > 0) }')" != 1 ] || delay_text="$delay_text, churn every $churn s"
scenario="Synthetic($alpha,$beta), $clients clients, seed $seed, $delay_text, jitter $jitter s, $duration s per mode"
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=false
if git status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then dirty=true; fi
export EXP_START="$start_time" EXP_SCENARIO="$scenario" EXP_CLIENTS="$clients" EXP_SEED="$seed" EXP_TEST_MULTIPLE="$test_multiple" \
       EXP_DELAYS="${delays[*]}" EXP_SLOWDOWNS="${slowdowns[*]:-}" EXP_JITTER="$jitter" EXP_MODES="${modes[*]}" \
       EXP_DURATION="$duration" EXP_EVAL="$eval_interval" EXP_CAL_MODE="$calibration_mode" \
       EXP_CAL_SECONDS="$calibration_seconds" EXP_CAL_WINDOW="$calibration_window" EXP_CAL_ACC="$calibration_accuracy" \
       EXP_FRACTION="$target_fraction" EXP_FIXED="$fixed_target" EXP_TARGET="$target" EXP_FAILED="${failed[*]:-}" \
       EXP_STATUSES="${statuses[*]}" EXP_COORD_FLAGS="${STRATA_COORDINATOR_FLAGS:-}" EXP_AGENT_FLAGS="${STRATA_AGENT_FLAGS:-}" \
       EXP_COMMIT="$commit" EXP_DIRTY="$dirty" EXP_ALPHA="$alpha" EXP_BETA="$beta" EXP_PATTERN="$delay_pattern" \
       EXP_AGENT_DELAYS="${agent_delay[*]}" EXP_CHURN="$churn" EXP_LOSS_TARGET="${loss_target:-}"
python3 - "$out/experiment.json" <<'PY'
import json, os, sys
e = os.environ
num = lambda s: float(s) if s not in ("", None) else None
modes = e["EXP_MODES"].split()
flags = {m: os.environ.get("STRATA_FLAGS_" + m.upper().replace("-", "_").replace("@", "_"), "") for m in modes + [e["EXP_CAL_MODE"]]}
record = {
    "scenario": e["EXP_SCENARIO"], "started": e["EXP_START"], "commit": e["EXP_COMMIT"],
    "uncommittedChanges": e["EXP_DIRTY"] == "true",
    "data": {"generator": "synthetic", "alpha": float(e["EXP_ALPHA"]), "beta": float(e["EXP_BETA"]), "clients": int(e["EXP_CLIENTS"]), "seed": int(e["EXP_SEED"]), "testMultiple": int(e["EXP_TEST_MULTIPLE"]),
             "features": 60, "classes": 10},
    "agents": {"taskDelayGroups": [float(x) for x in e["EXP_DELAYS"].split()],
               "slowdownGroups": [float(x) for x in e["EXP_SLOWDOWNS"].split()] or None,
               "taskJitter": float(e["EXP_JITTER"]), "emulationSeed": "client index (1-based)",
               "delayPattern": e["EXP_PATTERN"], "taskDelays": [float(x) for x in e["EXP_AGENT_DELAYS"].split()[1:]],
               "churnSeconds": float(e["EXP_CHURN"]),
               "grouping": "client i is in group floor((i-1) * groups / clients)",
               "extraFlags": e["EXP_AGENT_FLAGS"]},
    "modes": modes, "durationSeconds": float(e["EXP_DURATION"]), "evaluateIntervalSeconds": float(e["EXP_EVAL"]),
    "coordinatorFlags": {"all": e["EXP_COORD_FLAGS"], **{m: f for m, f in flags.items() if f}},
    "calibration": None if e["EXP_FIXED"] else {
        "mode": e["EXP_CAL_MODE"], "seconds": float(e["EXP_CAL_SECONDS"]), "addedDelays": False,
        "movingAverageWindow": int(e["EXP_CAL_WINDOW"]), "accuracy": num(e["EXP_CAL_ACC"])},
    "targetFraction": None if e["EXP_FIXED"] else float(e["EXP_FRACTION"]),
    "target": float(e["EXP_TARGET"]), "targetSource": "STRATA_TARGET" if e["EXP_FIXED"] else "calibration",
    "lossTarget": num(e["EXP_LOSS_TARGET"]),
    "coordinatorExitStatus": dict(s.split("=", 1) for s in e["EXP_STATUSES"].split()),
    "failedModes": e["EXP_FAILED"].split(),
}
with open(sys.argv[1], "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.write("\n")
PY

say "results"
plot_args=(--out "$out" --target "$target" --modes "${modes[@]}" --scenario "$scenario" --exit-status "${statuses[@]}")
[ -z "$loss_target" ] || plot_args+=(--loss-target "$loss_target")
[ -z "$calibration_accuracy" ] || plot_args+=(--calibration-accuracy "$calibration_accuracy")
plot_status=0
python3 Deploy/plot_experiment.py "${plot_args[@]}" || plot_status=$?

if [ ${#failed[@]} -gt 0 ]; then
    echo "modes that failed: ${failed[*]} (logs in $run_dir/<mode>)" >&2
    exit 1
fi
[ "$plot_status" -eq 0 ] || { echo "plot_experiment.py failed (status $plot_status)" >&2; exit 1; }
say "done: $out/accuracy-vs-time.svg, $out/results.md"
