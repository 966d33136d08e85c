#!/bin/sh
# Runs every test of an already configured build directory and prints one closing line
# "total: N passed, N failed". Exit status 0 only when nothing failed.
#   tests/run-tests.sh BUILD_DIR
set -u
build=${1:?usage: run-tests.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$build" || exit 1
jobs=$(nproc 2>/dev/null || echo 2)

passed=0
failed=0

# 1. The test programs (unit and integration), through automake's harness.
. "$src/tests/check-summary.sh"
check_programs "$build" "$jobs"

# 2. The manual pages must be clean under mandoc's linter.
for page in "$src"/man/*.[0-9]; do
    out=$(mandoc -Tlint -W warning "$page" 2>&1)
    if [ -z "$out" ]; then
        passed=$((passed + 1))
    else
        echo "FAIL mandoc -Tlint $(basename "$page"):"
        echo "$out"
        failed=$((failed + 1))
    fi
done

# 3. Suites with builds of their own, each ending with "NAME: N passed, N failed":
#    the fuzz targets for a bounded time (MTP_FUZZ_SECONDS per target, default 20; 0 skips),
#    and the unit and integration tests under ASan/LSan/UBSan (MTP_SANITIZE=0 skips).
suite() {
    name=$1
    shift
    out=$("$@" 2>&1)
    line=$(printf '%s\n' "$out" | grep -E "^$name: [0-9]+ passed, [0-9]+ failed$" | tail -n 1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -n 30
        echo "$name: no summary line"
        failed=$((failed + 1))
        return
    fi
    f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
    if [ "$f" -gt 0 ]; then
        printf '%s\n' "$out" | grep -v "^$name: [0-9]" | tail -n 200  # the reports, stacks and all
    else
        printf '%s\n' "$out" | grep -E '^(PASS|fuzz:|sanitizer reports:|sanitize.sh:)' | tail -n 20
    fi
    echo "$line"
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
    f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
    passed=$((passed + p))
    failed=$((failed + f))
}
fuzz_seconds=${MTP_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ] && [ -x "$src/tests/fuzz/run.sh" ]; then
    suite fuzz "$src/tests/fuzz/run.sh" "$fuzz_seconds" "$src/build-fuzz"
fi
if [ "${MTP_SANITIZE:-1}" != 0 ] && [ -x "$src/tests/sanitize.sh" ]; then
    suite sanitizers "$src/tests/sanitize.sh" "$src/build-asan"
fi

echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
