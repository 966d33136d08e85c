#!/bin/sh
# Builds the project with AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer in
# BUILD_DIR (out of tree) and runs the unit and the integration tests as tests/run-tests.sh
# does. The integration tests start the sanitized daemon (MTPOLICYD_BIN), so its master and
# workers are checked too. Every process writes its reports to BUILD_DIR/sanitizer-logs; after
# the run they are collected, deduplicated (by kind and first stack frames) and printed.
# Last line: "sanitizers: N passed, N failed" (test cases of both programs, plus one failure
# per distinct sanitizer report). Exit status 0 only when nothing failed.
#   tests/sanitize.sh [BUILD_DIR]      (default: build-asan, relative to the current dir)
#   tests/sanitize.sh --scan LOG_DIR   only collect and print the reports of an earlier run
# Environment: JOBS (make -j, default 2).
# shellcheck disable=SC3013  # test -nt: supported by dash, bash and busybox sh
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
jobs=${JOBS:-2}

# Prints the distinct reports found in the log files of directory $1, then the line
# "sanitizer reports: N distinct (...)"; sets $distinct. One report: an ASan error, one leak
# (direct or indirect) of an LSan report, a LeakSanitizer failure, or one UBSan runtime error.
# Reports of the same kind with the same first stack frames (sanitizer runtime frames skipped)
# are one distinct report, however many processes wrote them.
scan_reports() {
    distinct=0
    # File names are asan.PID / ubsan.PID: listed relative to the directory, they split safely.
    reports=$(cd "$1" && find . -type f \( -name 'asan.*' -o -name 'ubsan.*' \) | sed 's|^\./||' | sort)
    if [ -n "$reports" ]; then
        # shellcheck disable=SC2086
        out=$(cd "$1" && awk -v frames=4 -v maxlines=40 '
            function flush() {
                if (kind == "") return
                key = kind "|" stack
                if (!(key in seen)) {
                    seen[key] = ++n
                    order[n] = key
                    text[n] = block
                    where[n] = file
                }
                count[key]++
                kind = ""
            }
            function start(k) {
                flush()
                kind = k; stack = ""; nframes = 0; block = $0 "\n"; lines = 1; inframes = 0
                file = FILENAME
            }
            FNR == 1 { flush() }
            /ERROR: AddressSanitizer/ {
                k = $0; sub(/.*ERROR: AddressSanitizer: */, "", k); sub(/ .*/, "", k)
                start("asan " k); next
            }
            /^(Direct|Indirect) leak of / { start(($1 == "Direct" ? "direct" : "indirect") " leak"); next }
            /LeakSanitizer has encountered a fatal error/ { start("lsan failed"); next }
            /runtime error:/ {
                loc = $0; sub(/: runtime error:.*/, "", loc)
                start("ubsan " loc); next
            }
            kind == "" { next }
            /^=+$/ || /^SUMMARY:/ || /^==[0-9]+==/ { flush(); next }
            {
                if (lines < maxlines) { block = block $0 "\n"; lines++ }
                if ($0 ~ /^[ \t]*#[0-9]+ / && inframes < 2) {
                    inframes = 1
                    f = $0
                    sub(/^[ \t]*#[0-9]+ +(0x[0-9a-f]+ +)?(in +)?/, "", f)
                    if (f ~ /libsanitizer|asan_|ubsan_|sanitizer_common|__interceptor_/) next
                    if (nframes < frames) { stack = stack " <- " f; nframes++ }
                } else if (inframes == 1) {
                    inframes = 2  # first stack over ("freed by thread T0 here:"): shown only
                }
            }
            END {
                flush()
                for (i = 1; i <= n; i++) {
                    printf "=== sanitizer report %d of %d (%d time(s); first in %s)\n", i, n, count[order[i]], where[i]
                    t = text[i]; sub(/\n+$/, "\n", t)
                    printf "%s\n", t
                }
                printf "@@DISTINCT %d\n", n
            }' $reports)
        distinct=$(printf '%s\n' "$out" | sed -n 's/^@@DISTINCT //p')
        printf '%s\n' "$out" | grep -v '^@@DISTINCT '
        # Anything the parser did not recognise but that still names an error counts once.
        # shellcheck disable=SC2086
        if [ "${distinct:-0}" -eq 0 ] &&
            (cd "$1" && grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' $reports); then
            echo "=== unrecognised sanitizer output:"
            (cd "$1" && grep -hE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' $reports) | sort -u
            distinct=1
        fi
    fi
    distinct=${distinct:-0}
    echo "sanitizer reports: $distinct distinct (logs in $1)"
}

if [ "${1:-}" = --scan ]; then
    [ -d "${2:-}" ] || { echo "usage: $0 --scan LOG_DIR" >&2; exit 64; }
    scan_reports "$2"
    [ "$distinct" -eq 0 ]
    exit
fi

build=${1:-build-asan}
mkdir -p "$build" || exit 1
build=$(cd "$build" && pwd)

san="-fsanitize=address,undefined -fno-omit-frame-pointer"
cxxflags="-g1 -O1 $san"  # -g1: line tables for the stacks, a faster build
ldflags="$san"

# With g++, UBSan (libubsan) and ASan (libasan) are two runtimes. Both export
# __sanitizer_set_report_path, and libubsan's call to it binds to libasan's copy: UBSan's own
# reports would always go to stderr (lost for the daemon, whose stderr file the integration
# tests delete). This object, linked into every program of this build only, points libubsan's
# own copy at $MTP_UBSAN_LOG_PATH at start-up.
hook="$build/sanitize-ubsan-log.o"
cat >"$build/sanitize-ubsan-log.cpp.new" <<'EOF'
// Generated by tests/sanitize.sh: sends libubsan's reports to $MTP_UBSAN_LOG_PATH.<pid>.
#include <dlfcn.h>
#include <stdlib.h>
extern "C" __attribute__((constructor)) void mtp_sanitize_ubsan_log_path() {
    const char* path = getenv("MTP_UBSAN_LOG_PATH");
    if (!path || !*path) return;
    void* h = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!h) return;  // not g++'s separate runtime: UBSan uses ASan's log_path
    auto set = reinterpret_cast<void (*)(const char*)>(dlsym(h, "__sanitizer_set_report_path"));
    if (set) set(path);
    dlclose(h);
}
EOF
if cmp -s "$build/sanitize-ubsan-log.cpp.new" "$build/sanitize-ubsan-log.cpp"; then
    rm -f "$build/sanitize-ubsan-log.cpp.new"
else
    mv "$build/sanitize-ubsan-log.cpp.new" "$build/sanitize-ubsan-log.cpp"
fi
if [ ! -f "$hook" ] || [ "$build/sanitize-ubsan-log.cpp" -nt "$hook" ]; then
    ${CXX:-g++} -c -O1 -o "$hook" "$build/sanitize-ubsan-log.cpp" || exit 1
fi
libs="$hook -ldl"

# 1. Configure (again when the flags or configure changed) and build everything, the check
#    programs included.
if [ ! -x "$src/configure" ]; then
    (cd "$src" && autoreconf -fi) || exit 1
fi
stamp="$build/.sanitize-flags"
want="$cxxflags | $ldflags | $libs"
if [ ! -f "$build/Makefile" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
    [ "$src/configure" -nt "$build/config.status" ]; then
    (cd "$build" && "$src/configure" -q CXXFLAGS="$cxxflags" LDFLAGS="$ldflags" LIBS="$libs") || {
        echo "sanitize.sh: configure failed; see $build/config.log"
        echo "sanitizers: 0 passed, 1 failed"
        exit 1
    }
    echo "$want" >"$stamp"
fi
cd "$build" || exit 1
t0=$(date +%s)
if ! make -j"$jobs" --no-print-directory >make-sanitize.log 2>&1 ||
    ! make -j"$jobs" --no-print-directory check TESTS= >>make-sanitize.log 2>&1; then
    tail -n 30 make-sanitize.log
    echo "sanitize.sh: build failed; see $build/make-sanitize.log"
    echo "sanitizers: 0 passed, 1 failed"
    exit 1
fi

# 2. Sanitizer settings, inherited by the test programs and everything they start.
#    exitcode=0: a leak found at exit does not change a process's exit status (the tests check
#    the daemon's), it is counted from its report instead; abort_on_error=1: an ASan error
#    still kills the process (SIGABRT), as it would by default. UBSan errors do not stop the
#    process (halt_on_error=0); each is counted from its report. A worker killed with SIGKILL
#    by a test cannot report.
logs="$build/sanitizer-logs"
rm -rf "$logs"
mkdir -p "$logs" && chmod 1777 "$logs"  # the daemon may switch to an unprivileged user
#    UBSan's log_path must equal ASan's (libubsan's start-up sets libasan's path from it).
ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:exitcode=0:abort_on_error=1:check_initialization_order=1"
LSAN_OPTIONS="suppressions=$src/tests/lsan.supp:print_suppressions=0"
UBSAN_OPTIONS="log_path=$logs/asan:print_stacktrace=1:halt_on_error=0"
MTP_UBSAN_LOG_PATH="$logs/ubsan"
export ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS MTP_UBSAN_LOG_PATH

t1=$(date +%s)

# 3. The test programs (unit and integration), through automake's harness as run-tests.sh.
passed=0
failed=0
rm -f tests/unit/unit-tests.log tests/integration/integration-tests.log
. "$src/tests/check-summary.sh"
check_programs "$build" "$jobs"

t2=$(date +%s)

# 4. Collect the reports.
scan_reports "$logs"
failed=$((failed + distinct))
echo "sanitize.sh: build $((t1 - t0)) s, tests $((t2 - t1)) s"

echo "sanitizers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
