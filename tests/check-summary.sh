# tests/check-summary.sh: sourced (POSIX sh) by tests/run-tests.sh and tests/sanitize.sh.
#
# check_programs BUILD_DIR JOBS: runs `make check` (the unit and integration test programs,
# through automake's harness) in the current directory, prints each program's FAIL lines and
# its summary "NAME: N passed, N failed" (or, when there is none, that it crashed or did not
# build, with the end of its log), and adds the counts to $passed and $failed (a program
# without a summary counts as one failure).
check_programs() {
    make -j"$2" --no-print-directory check >/dev/null 2>&1
    for log in tests/unit/unit-tests.log tests/integration/integration-tests.log; do
        name=$(basename "$log" .log)
        line=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed$" "$log" 2>/dev/null | tail -n 1)
        if [ -z "$line" ]; then
            echo "$name: no summary line (crashed or did not build); see $1/$log"
            [ -f "$log" ] && tail -n 20 "$log"
            failed=$((failed + 1))
            continue
        fi
        grep -E '^FAIL ' "$log" || true
        echo "$line"
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
        f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
        passed=$((passed + p))
        failed=$((failed + f))
    done
}
