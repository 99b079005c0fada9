#!/usr/bin/env bash
# Renders the units for the programs in BIN_DIR (default .build/debug) and checks them with
# `systemd-analyze verify`: syntax, directives, and that ExecStart's program exists; then checks that the example
# settings files are accepted by those programs (--print-config). Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(cd "${1:-.build/debug}" && pwd)
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/prefix"
ln -s "$bin" "$work/prefix/bin"
for unit in Deploy/systemd/*.service; do
    sed "s|@PREFIX@|$work/prefix|g" "$unit" > "$work/$(basename "$unit")"
done
# A template is verified through an instance of it.
cp "$work/strata-agent@.service" "$work/strata-agent@example.service"
status=0
for unit in "$work/strata-coordinator.service" "$work/strata-agent@example.service"; do
    # Any output is a problem: an unknown or misspelt directive, a bad value, a program that is not there.
    problems=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$unit" 2>&1 || echo "systemd-analyze verify failed")
    if [ -n "$problems" ]; then
        echo "$(basename "$unit"):"; printf '%s\n' "$problems"; status=1
    else
        echo "$(basename "$unit"): ok"
    fi
done
# The example settings files are valid settings of the programs the units start.
for pair in "strata-coordinator coordinator.conf.example" "strata-agent agent.conf.example"; do
    set -- $pair
    if out=$("$bin/$1" --config "Deploy/systemd/$2" --state "$work/state.sqlite" --print-config 2>&1); then
        echo "$2: ok ($(printf '%s\n' "$out" | grep -vc '# default') settings)"
    else
        echo "$2:"; printf '%s\n' "$out"; status=1
    fi
done
exit $status
