#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 20) each, one after the other,
# and fails if any of them found a crash, a leak, a timeout or an out-of-memory.
#
# libFuzzer writes the inputs it finds into the first corpus directory it is given and only
# reads the others: that first one is a fresh temporary directory, removed on exit, so a
# run starts from the checked-in seeds (fuzz/corpus/<target>/, which it never changes) and
# leaves nothing behind. A failing input and the run's log are kept in
# fuzz/artifacts/<target>/ (ignored by git): reproduce it with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>` from fuzz/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${FUZZ_SECONDS:-20}"
# The sanitizer build takes ~12 minutes from cold on 2 cores: keep it outside the clone, so
# a CI run on a fresh clone of a machine that ran before starts warm.
target_dir="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/secret-store/fuzz-target}"
mkdir -p "$target_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== building the fuzz targets (nightly, AddressSanitizer, release with debug assertions) =="
cargo +nightly fuzz build --target-dir "$target_dir"

failed=()
for target in $(cargo +nightly fuzz list); do
    mkdir -p "$work/corpus/$target"
    log="$work/$target.log"
    if cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$work/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
        coverage="$(grep -o 'cov: [0-9]*' "$log" | tail -1)"
        found="$(find "$work/corpus/$target" -type f | wc -l)"
        echo "$target: ${runs:-?} runs in ${seconds}s, ${coverage:-cov: ?}, $found new inputs"
    else
        failed+=("$target")
        mkdir -p "artifacts/$target"
        cp "$log" "artifacts/$target/run.log"
        echo "$target: FAILED (whole log: fuzz/artifacts/$target/run.log)"
        grep -m1 -A1 'panicked at' "$log" || true
        grep -m1 -E '^==[0-9]+== ?ERROR' "$log" || true
        grep -m1 'Test unit written to' "$log" || true
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz: every target ran ${seconds}s without a failure"
