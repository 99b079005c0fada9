#!/usr/bin/env bash
# Strata quickstart: a real federation on this machine.
#
# Installs the system libraries if missing, builds in release mode, makes a dev PKI and Synthetic(1,1) data for
# 10 clients, starts the coordinator (--min-clients 10: training starts once every agent is connected) and 10
# agents over mutual TLS on loopback, prints one line per evaluated
# model version, and stops at the target accuracy (the central reference minus 5 points, unless
# STRATA_TARGET is set). Exits 0 when the target was reached, non-zero otherwise. Every process it starts is
# stopped when it ends, however it ends.
#
# Environment: STRATA_RUN_DIR (default run/quickstart), STRATA_CLIENTS (10), STRATA_SEED (1),
#              STRATA_TARGET (accuracy 0-1), STRATA_MAX_SECONDS (300), STRATA_CONFIG (release|debug).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
run_dir=${STRATA_RUN_DIR:-run/quickstart}
clients=${STRATA_CLIENTS:-10}
seed=${STRATA_SEED:-1}
max_seconds=${STRATA_MAX_SECONDS:-300}
config=${STRATA_CONFIG:-release}

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

# 2. Build.
say "building ($config)"
swift build -c "$config" --product strata-coordinator >/dev/null
swift build -c "$config" --product strata-agent >/dev/null
swift build -c "$config" --product strata-datagen >/dev/null
bin=$(swift build -c "$config" --show-bin-path)

# 3. A fresh run folder with a dev PKI and data.
rm -rf "$run_dir"
mkdir -p "$run_dir"
say "creating a dev PKI in $run_dir/pki"
Certs/strata-pki.sh --dir "$run_dir/pki" dev --agents "$clients" >/dev/null
say "generating Synthetic(1,1) data for $clients clients (seed $seed)"
"$bin/strata-datagen" --out "$run_dir/data" --clients "$clients" --alpha 1 --beta 1 --seed "$seed" | tail -n 1
reference=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["referenceAccuracy"])' "$run_dir/data/manifest.json")
target=${STRATA_TARGET:-$(python3 -c "print(round(max(0.0, $reference - 0.05), 4))")}

# 4. Start everything; stop everything on exit.
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

say "starting the coordinator (target accuracy $target, central reference $reference)"
"$bin/strata-coordinator" \
    --cert "$run_dir/pki/coordinator.crt" --key "$run_dir/pki/coordinator.key" --ca "$run_dir/pki/ca.crt" \
    --state "$run_dir/coordinator.sqlite" --port 0 --ready-file "$run_dir/coordinator.addr" \
    --features 60 --classes 10 --target-accuracy "$target" --min-evaluation-clients "$clients" --statistics-agents "$clients" --max-duration "$max_seconds" \
    --min-clients "$clients" \
    --summary-file "$run_dir/summary.json" 2>"$run_dir/coordinator.log" &
coordinator=$!
pids+=("$coordinator")
for _ in $(seq 1 100); do
    [ -s "$run_dir/coordinator.addr" ] && break
    kill -0 "$coordinator" 2>/dev/null || { echo "the coordinator exited early; see $run_dir/coordinator.log" >&2; tail -n 5 "$run_dir/coordinator.log" >&2; exit 1; }
    sleep 0.1
done
read -r host port < "$run_dir/coordinator.addr"

say "starting $clients agents"
for i in $(seq -f "%02g" 1 "$clients"); do
    "$bin/strata-agent" --coordinator "$host:$port" --server-name localhost \
        --cert "$run_dir/pki/agents/agent-$i.crt" --key "$run_dir/pki/agents/agent-$i.key" --ca "$run_dir/pki/ca.crt" \
        --database "$run_dir/data/client-$i.sqlite" --state "$run_dir/agent-$i.state.sqlite" \
        2>"$run_dir/agent-$i.log" &
    pids+=("$!")
done

status=0
wait "$coordinator" || status=$?
python3 - "$run_dir/summary.json" "$reference" <<'PY' || true
import json, sys
s = json.load(open(sys.argv[1])); ref = float(sys.argv[2])
ev = s.get("lastEvaluation") or {}
print()
print("Strata quickstart summary")
print(f"  model versions      {s['finalVersion']}")
if ev:
    print(f"  accuracy            {ev['accuracy']:.4f} at version {ev['version']} ({ev['clients']} clients, sample-weighted)")
print(f"  central reference   {ref:.4f}  (gap {ref - ev.get('accuracy', 0):+.4f})")
print(f"  target              {s.get('targetAccuracy')}: {'reached' if s['targetReached'] else 'NOT reached'}")
best = s.get("best")
if best:
    print(f"  best version        {best['version']}: {best['metric']} {best['score']:.4f} ({best['answered']}/{best['asked']} agents answered)")
print(f"  ended because       {s['reason']}: {s.get('detail') or ''}")
print(f"  updates accepted    {s['updatesAccepted']}")
print(f"  updates refused     {s['updatesRefused']}")
print(f"  wall time           {s['wallSeconds']:.1f} s")
PY
if [ "$status" -ne 0 ]; then
    echo "the federation did not reach its target (coordinator exit status $status); logs are in $run_dir" >&2
fi
exit "$status"
