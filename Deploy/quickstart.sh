#!/usr/bin/env bash
# Strata quickstart: a real federation on this machine, and what tiers buy over synchronous FedAvg.
#
# Installs the system libraries if missing, builds in release mode (printing its progress), makes a dev PKI and
# Synthetic(1,1) data for 10 clients, and starts the coordinator and 10 agents over mutual TLS on loopback. The
# agents are given different emulated delays (0, 0.5 and 2 s per task by agent, like three kinds of sites), so
# the coordinator forms latency tiers: it prints them as they form, then one line per evaluated model version,
# until the target accuracy (the central reference minus 5 points, unless STRATA_TARGET is set). Then the same
# agents run synchronous FedAvg (every round waits for the slowest) to the same target, and the two times to
# target are printed side by side. Exits 0 when Strata's run reached the target. Every process it starts is
# stopped when it ends, however it ends.
#
# Environment: STRATA_RUN_DIR (default run/quickstart), STRATA_CLIENTS (10), STRATA_SEED (1),
#              STRATA_TARGET (accuracy 0-1), STRATA_MAX_SECONDS (300 per run), STRATA_CONFIG (release|debug),
#              STRATA_DELAYS (seconds per task, cycled over the agents; default 0,0.5,2),
#              STRATA_COMPARE (1: also run synchronous FedAvg; 0: Strata only).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
run_dir=${STRATA_RUN_DIR:-run/quickstart}
clients=${STRATA_CLIENTS:-10}
seed=${STRATA_SEED:-1}
max_seconds=${STRATA_MAX_SECONDS:-300}
config=${STRATA_CONFIG:-release}
compare=${STRATA_COMPARE:-1}
IFS=',' read -r -a delays <<< "${STRATA_DELAYS:-0,0.5,2}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. System libraries (the coordinator and agents link the system's libssl and libsqlite3; the agent also libodbc).
missing=()
for pkg in libssl-dev libsqlite3-dev unixodbc-dev openssl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi

# 2. Build, showing progress: every 40th compilation step, and every error in full.
say "building strata-coordinator, strata-agent and strata-datagen ($config; the first build takes 5-10 minutes on 2 cores, later ones seconds)"
started=$SECONDS
for product in strata-coordinator strata-agent strata-datagen; do
    swift build -c "$config" --product "$product" 2>&1 \
        | awk -v p="$product" '/error:/ { print; next } /^\[[0-9]+\/[0-9]+\]/ { if (++k % 40 == 1) { print "    " p ": " $1 " " $2 " " $3; fflush() } }'
done
bin=$(swift build -c "$config" --show-bin-path)
say "built in $((SECONDS - started)) s: the programs are in $bin"

# 3. A fresh run folder with a dev PKI and data.
rm -rf "$run_dir"
mkdir -p "$run_dir"
say "creating a dev PKI in $run_dir/pki"
Certs/strata-pki.sh --dir "$run_dir/pki" dev --agents "$clients" >/dev/null
say "generating Synthetic(1,1) data for $clients clients (seed $seed)"
"$bin/strata-datagen" --out "$run_dir/data" --clients "$clients" --alpha 1 --beta 1 --seed "$seed" | tail -n 1
reference=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["referenceAccuracy"], 4))' "$run_dir/data/manifest.json")
target=${STRATA_TARGET:-$(python3 -c "print(round(max(0.0, $reference - 0.05), 4))")}

# 4. One federation: the coordinator in MODE, the agents with their delays; stops everything it started.
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap cleanup EXIT INT TERM

run_federation() {   # MODE DIR: returns the coordinator's exit status
    local mode=$1 dir=$2
    mkdir -p "$dir"
    say "[$mode] starting the coordinator (target accuracy $target, central reference $reference)"
    "$bin/strata-coordinator" --mode "$mode" \
        --cert "$run_dir/pki/coordinator.crt" --key "$run_dir/pki/coordinator.key" --ca "$run_dir/pki/ca.crt" \
        --state "$dir/coordinator.sqlite" --port 0 --ready-file "$dir/coordinator.addr" \
        --features 60 --classes 10 --target-accuracy "$target" --min-evaluation-clients "$clients" --statistics-agents "$clients" \
        --max-duration "$max_seconds" --min-clients "$clients" \
        --summary-file "$dir/summary.json" 2>"$dir/coordinator.log" > >(sed -u "s/^/  [$mode] /") &
    local coordinator=$!
    pids+=("$coordinator")
    for _ in $(seq 1 100); do
        [ -s "$dir/coordinator.addr" ] && break
        kill -0 "$coordinator" 2>/dev/null || { echo "the coordinator exited early; see $dir/coordinator.log" >&2; tail -n 5 "$dir/coordinator.log" >&2; return 1; }
        sleep 0.1
    done
    read -r host port < "$dir/coordinator.addr"
    say "[$mode] starting $clients agents, with ${STRATA_DELAYS:-0,0.5,2} s of extra delay per task (cycled over the agents)"
    local n=0
    for i in $(seq -f "%02g" 1 "$clients"); do
        "$bin/strata-agent" --coordinator "$host:$port" --server-name localhost \
            --cert "$run_dir/pki/agents/agent-$i.crt" --key "$run_dir/pki/agents/agent-$i.key" --ca "$run_dir/pki/ca.crt" \
            --database "$run_dir/data/client-$i.sqlite" --state "$dir/agent-$i.state.sqlite" --after-federation exit \
            --task-delay "${delays[$((n % ${#delays[@]}))]}" 2>"$dir/agent-$i.log" &
        pids+=("$!")
        n=$((n + 1))
    done
    local status=0
    wait "$coordinator" || status=$?
    cleanup
    return "$status"
}

status=0
run_federation strata "$run_dir/strata" || status=$?
if [ "$compare" = 1 ]; then
    run_federation fedavg "$run_dir/fedavg" || true
fi

python3 - "$run_dir" "$reference" "$compare" <<'PY' || true
import json, os, sys
run_dir, ref, compare = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
def load(mode):
    path = os.path.join(run_dir, mode, "summary.json")
    return json.load(open(path)) if os.path.exists(path) else None
runs = [("strata", "Strata (tiers, asynchronous)", load("strata"))]
if compare:
    runs.append(("fedavg", "FedAvg (synchronous)", load("fedavg")))
print()
print(f"Strata quickstart: {os.path.basename(run_dir)}, central reference accuracy {ref:.4f}")
print(f"  {'run':32} {'tiers':>5} {'time to target':>15} {'versions':>9} {'updates':>8} {'accuracy':>9}")
for mode, label, s in runs:
    if not s:
        print(f"  {label:32} (no summary: see {run_dir}/{mode})")
        continue
    ev = s.get("lastEvaluation") or {}
    t = s.get("timeToTargetSeconds")
    reached = f"{t:.1f} s" if s["targetReached"] and t is not None else "not reached"
    print(f"  {label:32} {s.get('tierCount', 0):>5} {reached:>15} {s['finalVersion']:>9} {s['updatesAccepted']:>8} {ev.get('accuracy', 0):>9.4f}")
times = [s.get("timeToTargetSeconds") if s and s["targetReached"] else None for _, _, s in runs]
if len(times) == 2 and all(times):
    print(f"  Strata reached the target {times[1] / times[0]:.1f}x faster than synchronous FedAvg on the same agents")
print(f"  logs and state: {run_dir}/strata, {run_dir}/fedavg")
PY
if [ "$status" -ne 0 ]; then
    echo "the Strata federation did not reach its target (coordinator exit status $status); logs are in $run_dir/strata" >&2
fi
exit "$status"
