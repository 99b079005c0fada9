#!/usr/bin/env bash
# Coverage-guided fuzzing of the frame decoder and the coordinator's message handling with libFuzzer
# (docs/SECURITY.md#fuzzing). Builds `strata-fuzz` with -sanitize=fuzzer into .build-fuzz, then runs each
# target for a bounded time over its corpus (Fuzz/corpus/<target>). Exits 1 if any target crashed.
#
#   Deploy/fuzz.sh [--target decode|coordinator|all] [--seconds N] [--merge] [-- LIBFUZZER_FLAGS...]
#
#   --target   which target (default: all, one after the other)
#   --seconds  libFuzzer's -max_total_time per target (default 60)
#   --merge    afterwards, minimise Fuzz/corpus/<target> together with what this run found (-merge=1)
#   --asan     also AddressSanitizer (slower; separate build in .build-fuzz-asan)
#   after --    passed to libFuzzer as they are (e.g. -jobs=2 -workers=2, -fork=1 -ignore_crashes=1)
#
# New inputs go to .build-fuzz/corpus/<target>, crash reproducers to .build-fuzz/crashes/<target>/;
# replay one without the sanitizer with `swift run strata-fuzz <target> FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(decode coordinator)
seconds=60
merge=0
sanitizers=fuzzer
scratch=.build-fuzz
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --target) shift; [ "$1" = all ] || targets=("$1") ;;
        --seconds) shift; seconds="$1" ;;
        --merge) merge=1 ;;
        --asan) sanitizers=fuzzer,address; scratch=.build-fuzz-asan ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for t in "${targets[@]}"; do
    case "$t" in decode|coordinator) ;; *) echo "fuzz.sh: unknown target $t" >&2; exit 2 ;; esac
done

echo "== building strata-fuzz with -sanitize=$sanitizers (release, $scratch)"
start=$(date +%s)
mkdir -p "$scratch"
# -parse-as-library: no Swift main; STRATA_LIBFUZZER selects the libFuzzer entry points in Sources/strata-fuzz.
if ! swift build -c release --product strata-fuzz --scratch-path "$scratch" \
        -Xswiftc -sanitize="$sanitizers" -Xswiftc -parse-as-library -Xswiftc -DSTRATA_LIBFUZZER > "$scratch/build.log" 2>&1; then
    tail -30 "$scratch/build.log"
    echo "fuzz.sh: the fuzz build failed (log: $scratch/build.log)" >&2
    exit 1
fi
bin="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/strata-fuzz"
echo "== built in $(( $(date +%s) - start )) s: $bin"

status=0
for t in "${targets[@]}"; do
    work="$scratch/corpus/$t"
    crashes="$scratch/crashes/$t"
    log="$scratch/fuzz-$t.log"
    mkdir -p "$work" "$crashes"
    case "$t" in
        decode) max_len=4096 ;;          # a few frames; the limits are tested with declared lengths, not bytes
        coordinator) max_len=1024 ;;     # 48 operations of a few bytes each
    esac
    echo "== fuzzing $t for ${seconds} s (corpus Fuzz/corpus/$t, new inputs in $work)"
    rc=0
    touch "$scratch/run-start-$t"   # reproducers of this run are the newer files
    # SWIFT_BACKTRACE off: libFuzzer prints the stack and saves the input; the Swift backtracer only slows a crash.
    STRATA_FUZZ_TARGET="$t" SWIFT_BACKTRACE=enable=no "$bin" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="$max_len" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$crashes/" ${extra[@]+"${extra[@]}"} \
        "$work" "Fuzz/corpus/$t" > "$log" 2>&1 || rc=$?
    # Progress as it was: the start, libFuzzer's pulses (doubling run counts), the end.
    grep -E "INITED|pulse|DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|ERROR|Fatal error|SUMMARY|Test unit written" "$log" || true
    last=$(grep -E "^#[0-9]+" "$log" | tail -1 || true)
    if [ "$rc" -eq 0 ]; then
        echo "== $t: no crash in ${seconds} s; last: $last"
    else
        status=1
        echo "== $t: CRASH (libFuzzer exit $rc); last: $last"
        grep -E "Fatal error|invariant broken" "$log" | head -3 || true
        grep -m1 -oE "Sources/[^ ]+\.swift:[0-9]+" "$log" | sed 's/^/   crashed at: /' || true
        find "$crashes" -type f -newer "$scratch/run-start-$t" | while read -r f; do
            echo "   reproducer: $f   (swift run strata-fuzz $t $f)"
        done
        echo "   full log: $log"
    fi
    if [ "$merge" -eq 1 ]; then
        merged="$scratch/merged-$t"
        rm -rf "$merged"; mkdir -p "$merged"
        STRATA_FUZZ_TARGET="$t" SWIFT_BACKTRACE=enable=no "$bin" -merge=1 -max_len="$max_len" "$merged" "Fuzz/corpus/$t" "$work" > "$scratch/merge-$t.log" 2>&1
        # Keep the hand-made seeds and regression inputs by name; the rest is the minimised set.
        find "Fuzz/corpus/$t" -type f ! -name 'seed-*' ! -name 'regress-*' -delete
        cp -n "$merged"/* "Fuzz/corpus/$t/" 2>/dev/null || true
        for f in "Fuzz/corpus/$t"/seed-* "Fuzz/corpus/$t"/regress-*; do
            [ -f "$f" ] && rm -f "Fuzz/corpus/$t/$(sha1sum "$f" | cut -d' ' -f1)"
        done
        echo "== $t corpus minimised: $(ls "Fuzz/corpus/$t" | wc -l) files, $(du -sk --apparent-size "Fuzz/corpus/$t" | cut -f1) KiB of content"
    fi
done
exit "$status"
