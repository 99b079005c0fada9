#!/usr/bin/env bash
# Builds Strata in release mode and installs it under a prefix, or packs a release archive that runs on a
# Debian machine without Swift. docs/OPERATIONS.md, "Installing" and "Running as a service".
#
#   Deploy/install.sh --prefix /usr/local            programs, units, examples, docs, the Python kit
#   Deploy/install.sh --prefix DIR --static          the Swift runtime linked in (no Swift libraries needed)
#   Deploy/install.sh --archive strata.tar.gz        a static build packed as a release archive (implies --static)
#
# Installed: PREFIX/bin/{strata-coordinator,strata-agent,stratactl,strata-datagen}; PREFIX/lib/systemd/system
# (the units, ExecStart pointing into PREFIX/bin); PREFIX/share/strata (settings examples, the PKI script, the Python
# kit Clients/python); PREFIX/share/doc/strata. Every program then answers --version with this commit.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="" archive="" static=0 skip_build=0
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --archive) archive=${2:?--archive needs a file name (.tar.gz)}; static=1; shift 2 ;;
        --static) static=1; shift ;;
        --skip-build) skip_build=1; shift ;;   # reuse the last release build (tests)
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (--help lists them)" >&2; exit 2 ;;
    esac
done
[ -n "$prefix" ] || [ -n "$archive" ] || { echo "install.sh: give --prefix DIR or --archive FILE.tar.gz (--help)" >&2; exit 2; }

programs=(strata-coordinator strata-agent stratactl strata-datagen)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
flags=(-c release -Xcc "-DSTRATA_GIT_COMMIT=\"$commit\"")
[ "$static" = 1 ] && flags+=(--static-swift-stdlib)
if [ "$skip_build" = 0 ]; then
    echo "building ${programs[*]} (release$([ "$static" = 1 ] && echo ", Swift runtime linked in"); commit ${commit:0:12}; 5-10 minutes the first time on 2 cores)"
    log=$(mktemp)
    for product in "${programs[@]}"; do
        echo "  $product"
        if ! swift build "${flags[@]}" --product "$product" > "$log" 2>&1; then
            grep -E 'error' "$log" | head -20 >&2
            echo "install.sh: building $product failed (full output: $log)" >&2; exit 1
        fi
    done
    rm -f "$log"
fi
bin=$(swift build "${flags[@]}" --show-bin-path)

staging=$prefix
if [ -n "$archive" ]; then
    staging=$(mktemp -d)/strata-$(git describe --tags --always 2>/dev/null || echo "${commit:0:12}")
    trap 'rm -rf "$(dirname "$staging")"' EXIT
fi
mkdir -p "$staging/bin" "$staging/lib/systemd/system" "$staging/share/strata" "$staging/share/doc/strata"
for program in "${programs[@]}"; do install -m 0755 "$bin/$program" "$staging/bin/$program"; done
# An archive is unpacked anywhere: its units name /usr/local, where docs/OPERATIONS.md unpacks it.
unit_prefix=$([ -n "$archive" ] && echo /usr/local || (cd "$staging" && pwd))
for unit in Deploy/systemd/*.service; do
    sed "s|@PREFIX@|$unit_prefix|g" "$unit" > "$staging/lib/systemd/system/$(basename "$unit")"
done
cp Deploy/systemd/*.example Certs/strata-pki.sh "$staging/share/strata/"
rm -rf "$staging/share/strata/python" && cp -r Clients/python "$staging/share/strata/python"
find "$staging/share/strata/python" \( -name __pycache__ -o -name '*.egg-info' -o -name build \) -prune -exec rm -rf {} +
cp README.md docs/*.md "$staging/share/doc/strata/"

if [ "$static" = 1 ]; then
    # The promise of a static build: no Swift library from the toolchain is needed at run time.
    for program in "${programs[@]}"; do
        if ldd "$staging/bin/$program" | grep -E 'libswift|libFoundation|libdispatch|libBlocksRuntime|_FoundationICU' >/dev/null; then
            echo "install.sh: $program still links a Swift library:" >&2; ldd "$staging/bin/$program" | grep -E 'swift|Foundation|dispatch' >&2; exit 1
        fi
    done
fi

if [ -n "$archive" ]; then
    tar -C "$(dirname "$staging")" -czf "$archive" "$(basename "$staging")"
    echo "release archive $archive ($(du -h "$archive" | cut -f1)): unpack it under /usr/local (tar -xzf $archive --strip-components 1 -C /usr/local)"
    echo "it needs only the system libraries: $(ldd "$staging/bin/strata-agent" | awk '$1 ~ /^lib/ {print $1}' | tr '\n' ' ')"
else
    echo "installed in $prefix:"
    for program in "${programs[@]}"; do echo "  $prefix/bin/$program"; done
    echo "  $prefix/lib/systemd/system/strata-coordinator.service, strata-agent@.service (docs/OPERATIONS.md, \"Running as a service\")"
    "$prefix/bin/strata-agent" --version | sed 's/^/  /'
fi
