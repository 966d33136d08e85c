#!/bin/bash
# tests/fuzz/run.sh: builds the libFuzzer targets of mtpolicyd with clang and runs each for a
# while (not part of `make check`). See tests/fuzz/README.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET (default 60)] [BUILD_DIR (default build-fuzz)]
#
# BUILD_DIR is relative to the current directory. The project sources the targets need are
# compiled straight from the source tree with clang++ -fsanitize=fuzzer-no-link,address,undefined
# (so coverage and the sanitizers cover the parser, config and JSON code), independently of any
# autotools build. Each target runs on BUILD_DIR/corpus/<target>, a working copy seeded from
# tests/fuzz/corpus/<target> (the repository's corpus is never written to); crash inputs go to
# BUILD_DIR/artifacts, logs to BUILD_DIR/logs. The last line is "fuzz: N passed, N failed";
# the exit status is 0 only when every target passed. Nothing is installed: a missing tool or
# library is named with the Debian package that provides it.
#
# Environment: TARGETS="fuzz_config ..." runs a subset; JOBS (default 2) compile jobs;
# FUZZ_ARGS extra libFuzzer options for every target.

# Flag lists ($CXXFLAGS, $SAN, $PC_LIBS, ...) are split into words on purpose.
# shellcheck disable=SC2086,SC2046
set -u

SECS=${1:-60}
BUILD=${2:-build-fuzz}
JOBS=${JOBS:-2}
case $SECS in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [BUILD_DIR]" >&2; exit 2 ;; esac

SRC=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ=$SRC/tests/fuzz
mkdir -p "$BUILD" || exit 2
BUILD=$(cd "$BUILD" && pwd)
ALL_TARGETS="fuzz_request_parser fuzz_config fuzz_user_config_json fuzz_legacy_config"
TARGETS=${TARGETS:-$ALL_TARGETS}
NTARGETS=$(echo $TARGETS | wc -w)

CXX=${CXX_FUZZ:-clang++}
t0=$(date +%s)

# --- prerequisites (named, never installed) ------------------------------------------------
missing=""
if ! command -v "$CXX" >/dev/null 2>&1; then
    missing="$missing clang"
fi
if ! command -v pkg-config >/dev/null 2>&1; then
    missing="$missing pkg-config"
fi
if [ -n "$missing" ]; then
    echo "fuzz: missing tools; on Debian 12: apt-get install$missing libclang-rt-14-dev" >&2
    echo "fuzz: 0 passed, 0 failed"
    exit 2
fi
probe=$BUILD/probe
mkdir -p "$probe"
printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
    >"$probe/probe.cpp"
if ! "$CXX" -fsanitize=fuzzer,address,undefined "$probe/probe.cpp" -o "$probe/probe" >"$probe/log" 2>&1; then
    sed -n 1,5p "$probe/log" >&2
    echo "fuzz: $CXX cannot build with -fsanitize=fuzzer,address,undefined; on Debian 12:" \
        "apt-get install libclang-rt-14-dev (the clang runtime: libFuzzer, ASan, UBSan)" >&2
    echo "fuzz: 0 passed, 0 failed"
    exit 2
fi
declare -A pkgdeb=([libconfig++]=libconfig++-dev [libcjson]=libcjson-dev [sqlite3]=libsqlite3-dev
                   [libmariadb]=libmariadb-dev [libpcre2-8]=libpcre2-dev)
for p in libconfig++ libcjson sqlite3 libpcre2-8; do
    pkg-config --exists "$p" || missing="$missing ${pkgdeb[$p]}"
done
MYSQL_PC=libmariadb
pkg-config --exists libmariadb || { pkg-config --exists mysqlclient && MYSQL_PC=mysqlclient; } ||
    missing="$missing libmariadb-dev"
if [ -n "$missing" ]; then
    echo "fuzz: missing libraries; on Debian 12: apt-get install$missing" >&2
    echo "fuzz: 0 passed, 0 failed"
    exit 2
fi
PC_CFLAGS=$(pkg-config --cflags libconfig++ libcjson sqlite3 libpcre2-8 $MYSQL_PC)
PC_LIBS=$(pkg-config --libs libconfig++ libcjson sqlite3 libpcre2-8 $MYSQL_PC)

# --- build ---------------------------------------------------------------------------------
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
CXXFLAGS="-std=c++17 -g -O1 -fno-omit-frame-pointer $SAN -I$SRC/include $PC_CFLAGS"
OBJ=$BUILD/obj
mkdir -p "$OBJ" "$BUILD/logs" "$BUILD/artifacts" "$BUILD/corpus"

# Everything the config and JSON targets reach (the daemon without its server part).
LIB_SOURCES=$(cd "$SRC" && ls src/util/*.cpp src/core/*.cpp src/plugins/*.cpp src/sql/*.cpp)
# The newest header: an object older than it is rebuilt (coarse, but always right).
newest_header=$(ls -t "$SRC"/include/mtpolicyd/*/*.h "$SRC"/src/*/*.h 2>/dev/null | head -1)

build_failed=0
compile() {  # compile SRC_FILE OBJ_FILE EXTRA_FLAGS
    local src=$1 obj=$2 extra=$3
    if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$newest_header" ] &&
        [ "$obj" -nt "$FUZZ/run.sh" ]; then
        return 0
    fi
    if ! $CXX $CXXFLAGS $extra -c "$src" -o "$obj" 2>"$obj.log"; then
        echo "fuzz: compiling ${src#"$SRC"/} failed:" >&2
        sed -n 1,30p "$obj.log" >&2
        rm -f "$obj"
        return 1
    fi
}

objs=()
queue() {  # queue SRC_FILE OBJ_FILE EXTRA_FLAGS: at most JOBS compilers at a time
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    compile "$@" &
}
for s in $LIB_SOURCES src/server/RequestParser.cpp; do
    o=$OBJ/$(echo "$s" | tr / _).o
    objs+=("$o")
    queue "$SRC/$s" "$o" "-fsanitize=fuzzer-no-link"
done
for t in $TARGETS; do
    queue "$FUZZ/$t.cpp" "$OBJ/$t.o" "-fsanitize=fuzzer-no-link"
done
wait
for o in "${objs[@]}"; do [ -f "$o" ] || build_failed=1; done
for t in $TARGETS; do [ -f "$OBJ/$t.o" ] || build_failed=1; done
if [ "$build_failed" != 0 ]; then
    echo "fuzz: build failed"
    echo "fuzz: 0 passed, $NTARGETS failed"
    exit 1
fi

link_objs() {  # the project objects a target links
    case $1 in
        fuzz_request_parser) echo "$OBJ/src_server_RequestParser.cpp.o" ;;
        *) for o in "${objs[@]}"; do [ "$o" = "$OBJ/src_server_RequestParser.cpp.o" ] || echo "$o"; done ;;
    esac
}
for t in $TARGETS; do
    if ! $CXX -fsanitize=fuzzer $SAN -g -o "$BUILD/$t" "$OBJ/$t.o" $(link_objs "$t") $PC_LIBS \
        2>"$BUILD/logs/$t.link.log"; then
        echo "fuzz: linking $t failed:" >&2
        sed -n 1,30p "$BUILD/logs/$t.link.log" >&2
        echo "fuzz: 0 passed, $NTARGETS failed"
        exit 1
    fi
done
tb=$(date +%s)
echo "fuzz: built $NTARGETS targets in $((tb - t0)) s ($BUILD)"

# --- run -----------------------------------------------------------------------------------
max_len() {
    case $1 in
        fuzz_request_parser) echo 65536 ;;  # several requests, long lines, default limits
        fuzz_config) echo 16384 ;;          # the sample configurations are ~6 KB
        fuzz_user_config_json) echo 16384 ;;
        fuzz_legacy_config) echo 16384 ;;   # the Debian default configuration is ~5 KB
    esac
}

target_args() {
    case $1 in
        # libconfig 1.5 leaks a few bytes on every syntax error (lsan.supp); a leak check after
        # each such input would cost 90% of the time. Leaks are still checked when the run
        # ends (and reported with the sanitizer's stack, without the input).
        fuzz_config) echo "-detect_leaks=0" ;;
    esac
}

passed=0
failed=0
for t in $TARGETS; do
    work=$BUILD/corpus/$t
    mkdir -p "$work"
    [ -d "$FUZZ/corpus/$t" ] && cp -n "$FUZZ/corpus/$t"/* "$work"/ 2>/dev/null
    dict=()
    [ -f "$FUZZ/$t.dict" ] && dict=(-dict="$FUZZ/$t.dict")
    log=$BUILD/logs/$t.log
    stamp=$BUILD/logs/$t.start
    touch "$stamp"
    # -timeout: one input taking longer is a finding (a hang), not a stall of the whole run.
    ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$FUZZ/lsan.supp:print_suppressions=0} \
        "$BUILD/$t" -max_total_time="$SECS" -max_len="$(max_len "$t")" -timeout=20 \
        -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" $(target_args "$t") \
        -artifact_prefix="$BUILD/artifacts/$t-" ${FUZZ_ARGS:-} "$work" >"$log" 2>&1
    rc=$?
    new=$(find "$BUILD/artifacts" -type f -name "$t-*" -newer "$stamp" | sort)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(ls "$work" | wc -l)
    if [ "$rc" = 0 ] && [ -z "$new" ]; then
        passed=$((passed + 1))
        echo "PASS $t: ${runs:-?} runs in ${SECS} s, cov ${cov:-?}, corpus $corp files (log $log)"
    else
        failed=$((failed + 1))
        why=$(grep -m1 -E '^==[0-9]+==ERROR|runtime error|invariant violated|ERROR: libFuzzer' "$log")
        echo "FAIL $t: exit $rc: ${why:-see log} (log $log)"
        for a in $new; do echo "     crash input: $a"; done
    fi
done
echo "fuzz: total $(($(date +%s) - t0)) s (build $((tb - t0)) s)"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
