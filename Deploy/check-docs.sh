#!/usr/bin/env bash
# Runs every shell block of README.md and docs/*.md marked runnable (the line `<!-- runnable -->` right before the
# fence), as written, from the repository root with the programs of BIN_DIR (default .build/debug) first on PATH.
# Each block runs in bash with -euo pipefail and a 5-minute limit; its output goes to a log, shown if it fails.
# Run by .ci/run, so the commands the docs promise keep working.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${1:-.build/debug}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" README.md docs/*.md <<'PY'
import os, re, sys
work, files = sys.argv[1], sys.argv[2:]
n = 0
for path in files:
    lines = open(path, encoding="utf-8").read().split("\n")
    for i, line in enumerate(lines):
        if line.strip() != "<!-- runnable -->":
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            sys.exit(f"{path}:{i + 1}: <!-- runnable --> must come right before a ``` fence")
        body = []
        for end in range(i + 2, len(lines)):
            if lines[end].startswith("```"):
                break
            body.append(lines[end])
        else:
            sys.exit(f"{path}:{i + 2}: the runnable block has no closing fence")
        n += 1
        with open(os.path.join(work, f"{n:02d}.sh"), "w") as f:
            f.write(f"# {path}:{i + 2}\n" + "\n".join(body) + "\n")
print(f"{n} runnable blocks", file=sys.stderr)
PY
status=0
for block in "$work"/*.sh; do
    [ -e "$block" ] || continue
    where=$(head -n 1 "$block" | cut -c3-)
    start=$(date +%s)
    if PATH="$bin:$PATH" timeout "${BLOCK_TIMEOUT:-300}" bash -euo pipefail "$block" > "$block.log" 2>&1; then
        echo "$where: ok ($(( $(date +%s) - start )) s)"
    else
        code=$?
        echo "$where: failed (exit $code); its output:"; tail -n 40 "$block.log"; status=1
    fi
done
# What the blocks made under run/ (the quickstart's folder) is theirs to leave; the demo's is removed.
[ "${KEEP_DEMO:-0}" = 1 ] || rm -rf run/demo
exit $status
