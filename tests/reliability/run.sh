#!/bin/bash
# tests/reliability/run.sh: runs the fault-injection integration tests and prints their
# results as a plain-text table for the README section "Reliability".
#
#   tests/reliability/run.sh [BUILD_DIR]
#
# BUILD_DIR (default: the current directory) must hold the built mtpolicyd, policyd-client
# and tests/integration/integration-tests (make mtpolicyd policyd-client
# tests/integration/integration-tests). The suites run are TestFaults (worker crashes, reloads,
# a database outage and a stopped worker, all under load; it needs mariadb-server for its
# private MariaDB) and, when it is built into the test program, TestHostile. Each test prints
# one line "RELIABILITY <test> key=value ..." with its figures; this script collects them,
# with each test's result, into the table, headed by the date, the machine (uname, CPU
# model, nproc) and the exact commands. The raw output of each suite is kept in a temp dir
# whose name is printed. The last line is "reliability: N passed, N failed"; the exit status
# is 0 only when nothing failed.
#
# Everything the tests start (daemons, MariaDB) is stopped by the tests themselves; this
# script starts nothing else. Only loopback TCP and unix sockets are used.
set -uo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
COMMAND_LINE=$(printf '%q ' "$0" "$@")
COMMAND_LINE=${COMMAND_LINE% }

case "${1:-}" in
-h | --help)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
if [ $# -gt 1 ]; then
    echo "usage: $PROG [BUILD_DIR]" >&2
    exit 2
fi

BUILD_DIR=$(cd "${1:-.}" 2>/dev/null && pwd) || {
    echo "$PROG: no such directory: ${1:-.}" >&2
    exit 2
}
TESTS_BIN=$BUILD_DIR/tests/integration/integration-tests
for f in "$BUILD_DIR/mtpolicyd" "$BUILD_DIR/policyd-client" "$TESTS_BIN"; do
    if [ ! -x "$f" ]; then
        echo "$PROG: $f is missing; build it first:" >&2
        echo "  make -C $BUILD_DIR mtpolicyd policyd-client tests/integration/integration-tests" >&2
        exit 2
    fi
done

# The suites: TestFaults always; TestHostile only when the test program has it.
SUITES=(TestFaults)
NOTES=()
if grep -qa 'TestHostile' "$TESTS_BIN"; then
    SUITES+=(TestHostile)
elif [ -f "$SRC_DIR/tests/integration/TestHostile.cpp" ]; then
    NOTES+=("TestHostile: tests/integration/TestHostile.cpp exists but is not built into $TESTS_BIN (rebuild it); not run")
else
    NOTES+=("TestHostile: not present; not run")
fi

OUT_DIR=$(mktemp -d /tmp/mtpolicyd-reliability.XXXXXX)
ENV_PREFIX="MTPOLICYD_BIN=$BUILD_DIR/mtpolicyd POLICYD_CLIENT_BIN=$BUILD_DIR/policyd-client MTPOLICYD_SRCDIR=$SRC_DIR TEST_VERBOSE=1"

# Machine.
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
[ -n "$cpu" ] || cpu=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ { print $2; exit }')
[ -n "$cpu" ] || cpu=unknown
machine="$(uname -srm), $cpu, nproc $(nproc)"

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
RESULTS=$OUT_DIR/results.txt  # suite<TAB>test<TAB>result
FIGURES=$OUT_DIR/figures.txt  # test<TAB>figures
: >"$RESULTS"
: >"$FIGURES"
commands=()
for suite in "${SUITES[@]}"; do
    log=$OUT_DIR/$suite.out
    commands+=("$ENV_PREFIX $TESTS_BIN $suite")
    echo "$PROG: running $suite (output: $log) ..." >&2
    t0=$(date +%s)
    (cd "$BUILD_DIR" && env MTPOLICYD_BIN="$BUILD_DIR/mtpolicyd" \
        POLICYD_CLIENT_BIN="$BUILD_DIR/policyd-client" MTPOLICYD_SRCDIR="$SRC_DIR" \
        TEST_VERBOSE=1 "$TESTS_BIN" "$suite") >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    echo "$PROG: $suite: exit $rc after ${secs} s" >&2
    awk -v suite="$suite" '
        /^ok   / { n = $2; sub(/^.*::/, "", n); print suite "\t" n "\tok" }
        /^FAIL / { n = $2; sub(/^.*::/, "", n); print suite "\t" n "\tFAIL" }' "$log" >>"$RESULTS"
    awk '/^RELIABILITY / {
            n = $2; sub(/^.*::/, "", n); $1 = ""; $2 = ""; sub(/^ +/, "")
            print n "\t" $0 }' "$log" >>"$FIGURES"
    # A run that ended without its summary line (a crash) counts as a failed test.
    if ! grep -q '^integration-tests: [0-9]* passed, [0-9]* failed' "$log"; then
        printf '%s\t%s\t%s\n' "$suite" "(test program)" "FAIL: exit $rc, no summary" >>"$RESULTS"
    fi
    NOTES+=("$suite: ${secs} s, test program exit status $rc")
done

# Memory: a worker's RSS stays flat (within 10%) over 1,000,000 requests (MEM_REQUESTS),
# measured with mtpolicyd-bench on a private daemon (trivial chain, keep-alive, 8
# connections) after a warm-up of a tenth of that.
MEM_REQUESTS=${MEM_REQUESTS:-1000000}
BENCH=$BUILD_DIR/mtpolicyd-bench
if [ -x "$BENCH" ] && [ "$MEM_REQUESTS" -gt 0 ]; then
    memdir=$OUT_DIR/memory
    mkdir -p "$memdir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$memdir/mtpolicyd.conf" <<CONF
log_level = 0;
pid_file = "$memdir/mtpolicyd.pid";
port = [ "127.0.0.1:$port" ];
virtual_hosts = ( { name = "trivial"; port = "$port";
  plugins = ( { name = "dunno"; module = "Action"; action = "dunno"; } ); } );
CONF
    commands+=("$BUILD_DIR/mtpolicyd -f -c $memdir/mtpolicyd.conf; $BENCH -H 127.0.0.1:$port -c 8 -n $MEM_REQUESTS --daemon-pid PID --json")
    echo "$PROG: running the memory test ($MEM_REQUESTS requests) ..." >&2
    "$BUILD_DIR/mtpolicyd" -f -c "$memdir/mtpolicyd.conf" >"$memdir/daemon.log" 2>&1 &
    daemon=$!
    for _ in $(seq 50); do "$BENCH" -H "127.0.0.1:$port" -c 1 -n 1 >/dev/null 2>&1 && break; sleep 0.1; done
    "$BENCH" -H "127.0.0.1:$port" -c 8 -n $((MEM_REQUESTS / 10)) >/dev/null 2>&1
    "$BENCH" -H "127.0.0.1:$port" -c 8 -n "$MEM_REQUESTS" --daemon-pid "$daemon" --json >"$memdir/bench.json" 2>"$memdir/bench.err"
    kill "$daemon" 2>/dev/null
    wait "$daemon" 2>/dev/null
    python3 - "$memdir/bench.json" "$daemon" >"$memdir/result.txt" <<'PY'
import json, sys
try:
    d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception as e:
    print("FAIL\tno benchmark result (%s)" % e)
    sys.exit()
master = int(sys.argv[2])
workers = [p for p in d.get("processes", []) if p["pid"] != master and p.get("whole_run")]
errors = d.get("errors", {}).get("total", 1)
if not workers or errors != 0:
    print("FAIL\trequests=%s errors=%s workers=%d" % (d.get("requests"), errors, len(workers)))
    sys.exit()
growth = max((p["rss_kb_last"] - p["rss_kb_first"]) * 100.0 / p["rss_kb_first"] for p in workers)
top = max(p["rss_kb_max"] for p in workers)
print("%s\trequests=%d req_per_s=%.0f workers=%d worker_rss_kb_max=%d max_growth_pct=%.1f" % (
    "ok" if growth <= 10.0 else "FAIL", d["requests"], d["requests_per_s"], len(workers), top, growth))
PY
    IFS=$'\t' read -r memresult memfig <"$memdir/result.txt"
    printf '%s\t%s\t%s\n' memory testWorkerRssOverRequests "$memresult" >>"$RESULTS"
    printf '%s\t%s\n' testWorkerRssOverRequests "$memfig" >>"$FIGURES"
else
    NOTES+=("memory: $BENCH not built or MEM_REQUESTS=0; not run")
fi

# RELIABILITY lines of tests that have no result line (a test program that crashed).
awk -F'\t' 'NR == FNR { seen[$2] = 1; next } !($1 in seen) { print "?\t" $1 "\t?" }' \
    "$RESULTS" "$FIGURES" >>"$RESULTS"

passed=$(awk -F'\t' '$3 == "ok"' "$RESULTS" | wc -l)
failed=$(awk -F'\t' '$3 ~ /^FAIL/' "$RESULTS" | wc -l)

echo "Reliability: fault injection under load (tests/reliability/run.sh)"
echo
echo "date:     $started"
echo "machine:  $machine"
echo "command:  $COMMAND_LINE"
for c in "${commands[@]}"; do
    echo "runs:     $c"
done
echo
awk -F'\t' -v width=100 '
    NR == FNR { fig[$1] = (fig[$1] == "" ? $2 : fig[$1] " " $2); next }
    {
        rows[++n] = $0
        if (length($2) > w) w = length($2)
    }
    END {
        if (w < 4) w = 4
        printf "%-*s  %-6s  %s\n", w, "test", "result", "figures"
        line = ""; for (i = 0; i < w; i++) line = line "-"
        printf "%s  ------  -------\n", line
        for (i = 1; i <= n; i++) {
            split(rows[i], r, "\t")
            f = (r[2] in fig) ? fig[r[2]] : "-"
            # Wrap the figures at word boundaries, continuation lines indented.
            nw = split(f, words, " ")
            out = ""; cur = ""
            for (j = 1; j <= nw; j++) {
                if (cur != "" && length(cur) + 1 + length(words[j]) > width) {
                    out = out cur "\n"; cur = words[j]
                } else cur = (cur == "" ? words[j] : cur " " words[j])
            }
            out = out cur
            m = split(out, lines, "\n")
            printf "%-*s  %-6s  %s\n", w, r[2], r[3], lines[1]
            for (j = 2; j <= m; j++) printf "%-*s  %-6s  %s\n", w, "", "", lines[j]
        }
    }' "$FIGURES" "$RESULTS"
echo
for note in "${NOTES[@]}"; do
    echo "note:     $note"
done
echo "raw:      $OUT_DIR"
echo
echo "reliability: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
