#!/usr/bin/env bash
# Starts strata-agent with the settings of an env file (see agent.env.example).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 AGENT_ENV_FILE" >&2; exit 64; }
# shellcheck disable=SC1090
source "$1"
args=(--coordinator "$STRATA_COORDINATOR" --cert "$STRATA_CERT" --key "$STRATA_KEY" --ca "$STRATA_CA"
      --database "$STRATA_DATABASE" --label-column "${STRATA_LABEL_COLUMN:-label}"
      --split-column "${STRATA_SPLIT_COLUMN:-split}" --state "$STRATA_STATE")
[ -n "${STRATA_SERVER_NAME:-}" ] && args+=(--server-name "$STRATA_SERVER_NAME")
if [ -n "${STRATA_QUERY:-}" ]; then args+=(--query "$STRATA_QUERY"); else args+=(--table "${STRATA_TABLE:-samples}"); fi
[ -n "${STRATA_FEATURE_COLUMNS:-}" ] && args+=(--feature-columns "$STRATA_FEATURE_COLUMNS")
[ -n "${STRATA_EXCLUDE_COLUMNS:-}" ] && args+=(--exclude-columns "$STRATA_EXCLUDE_COLUMNS")
[ -n "${STRATA_NULL_POLICY:-}" ] && args+=(--null-policy "$STRATA_NULL_POLICY")
exec "${STRATA_AGENT_BIN:-strata-agent}" "${args[@]}"
