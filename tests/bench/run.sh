#!/bin/bash
# tests/bench/run.sh: a benchmark of mtpolicyd that anyone can re-run (not part of the test
# suite). Run it as root on Debian 12 from a build directory's binaries:
#
#   tests/bench/run.sh [options] [BUILD_DIR]
#
# What it measures, all on this one machine over 127.0.0.1 (the load generator, the daemons
# and MariaDB share the same CPUs; the table says how much CPU each of them used):
#
#  * Throughput (requests/s), latency (p50/p99 in microseconds, send -> full reply) and CPU
#    time per request of our mtpolicyd and of the Perl mtpolicyd 2.05 (the Debian package
#    `mtpolicyd`, started here in the foreground with a config of our own), for two chains:
#      trivial  one Action plugin answering "dunno": the cost of the daemon itself;
#      howto    the accounting how-to (Mail::MtPolicyd::Cookbook::HowtoAccountingQuota):
#               SqlUserConfig -> Quota -> Accounting against a private MariaDB, three SQL
#               statements per message (quota never defers: every client has a policy
#               with quota_count 1000000000);
#    each with 1, 8 and 32 connections, kept alive or one new connection per request, each
#    cell DURATION seconds (after a 1 s warm-up at its own concurrency), with mtpolicyd-bench;
#    before each series the other daemon is given time to go quiet (see settle()).
#  * The machine's ceilings at the same concurrency: the protocol ceiling (an in-process
#    epoll responder that answers "action=dunno", for the trivial rows) and the SQL ceiling
#    (the how-to's statements sent straight to the same MariaDB, for the howto rows). The
#    protocol ceiling runs in both modes (a new connection per request too); the howto
#    new-connection rows are compared with the SQL ceiling, which opens no connections.
#  * mysqld's CPU per request for the howto rows (utime+stime of mysqld before and after).
#  * The SQL ceiling at 8 connections once more with the two SELECTs merged into one compound
#    statement (mtpolicyd-bench --merge-selects): whether one round trip fewer would pay.
#  * What a wake-up costs on this machine (mtpolicyd-bench --machine-costs, with the daemons
#    idle, before the matrix): a system call, a blocking round trip between two processes and between two
#    threads. A kept-alive how-to request sleeps four times in the daemon (the request, three
#    database answers), which bounds its CPU per request from below.
#  * The RSS of every process involved after the runs.
#  * Memory (unless --no-memory; on a freshly restarted daemon of ours, Perl takes no part):
#    (a) the RSS of our workers over 1,000,000 requests
#    (trivial chain, keep-alive, 8 connections, after a 100,000-request warm-up);
#    (b) 10,000 idle keep-alive connections held by our default workers while 8 connections
#    load the trivial chain: connections held, p99 of the load, daemon RSS.
#
# It installs nothing; it says which Debian package is missing. Without the Perl mtpolicyd
# (or DBD::mysql) it runs without the Perl column. Everything it starts (MariaDB, both
# daemons) lives in a temp dir under /tmp and is stopped by pid on exit; the raw JSON lines,
# the logs, the configs and the report are kept in the output directory (-o).
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
COMMAND_LINE=$(printf '%q ' "$0" "$@")
COMMAND_LINE=${COMMAND_LINE% }

DURATION=${DURATION:-5}
ENGINES=${ENGINES:-InnoDB}
CONNS=${CONNS:-1 8 32}
CLIENTS=${CLIENTS:-100}
MEM_REQUESTS=${MEM_REQUESTS:-1000000}
MEM_WARMUP=${MEM_WARMUP:-100000}
IDLE=${IDLE:-10000}
KEEP=${KEEP:-0}
MYSQLD_OPTS=${MYSQLD_OPTS:-}
PERL_MTPOLICYD=${PERL_MTPOLICYD:-/usr/bin/mtpolicyd}

usage() {
    cat <<EOF
Usage: $PROG [options] [BUILD_DIR]

Benchmarks our mtpolicyd against the Perl mtpolicyd 2.05 and this machine's ceilings
(protocol and SQL), over 127.0.0.1 only, and prints one table (see the comment at the
top of this script for what each figure means). Run as root on Debian 12. BUILD_DIR holds
the built mtpolicyd and mtpolicyd-bench (make mtpolicyd mtpolicyd-bench); default: the
first of $SRC_DIR/build and $SRC_DIR that has both.

Options:
  -o DIR        keep the raw JSON lines, logs, configs and the report in DIR
                (default: a new /tmp/mtp-bench-out.XXXXXX, printed at the end)
  --memory      run only the memory part (worker RSS over $MEM_REQUESTS requests, and
                $IDLE idle keep-alive connections), not the throughput matrix
  --no-memory   skip the memory part (by default it runs after the matrix)
  --no-perl     leave out the Perl mtpolicyd even when it is installed
  -h, --help    show this help and exit

Environment:
  DURATION=5           seconds per cell (and for the idle-connection run)
  ENGINES="InnoDB"     storage engines of acct_client_address; "InnoDB MyISAM" runs the
                       howto rows once per engine
  CONNS="1 8 32"       connection counts of the matrix
  CLIENTS=100          distinct client addresses in the requests
  MEM_REQUESTS=1000000 MEM_WARMUP=100000 IDLE=10000   sizes of the memory part
  MYSQLD_OPTS=""       extra mariadbd options (e.g. --innodb-flush-log-at-trx-commit=2)
  KEEP=1               keep the temp dir (MariaDB data, sockets) after the run
  PERL_MTPOLICYD=/usr/bin/mtpolicyd

Needs (Debian packages): mariadb-server, mariadb-client, python3; for the Perl column
mtpolicyd and libdbd-mysql-perl. The Debian mtpolicyd service is not used: the Perl daemon
is started in the foreground with a config in the temp dir, on its own ports.

Example: DURATION=2 ENGINES="InnoDB MyISAM" $0 -o /tmp/bench-out build
EOF
}

# --- options ----------------------------------------------------------------------------------
OUT=""
RUN_MATRIX=1
RUN_MEMORY=1
USE_PERL=1
BUILD=""
while (($#)); do
    case $1 in
    -o)
        [[ $# -ge 2 ]] || { echo "$PROG: -o needs a directory" >&2; exit 64; }
        OUT=$2
        shift 2
        ;;
    -o*) OUT=${1#-o}; shift ;;
    --memory) RUN_MATRIX=0; RUN_MEMORY=1; shift ;;
    --no-memory) RUN_MEMORY=0; shift ;;
    --no-perl) USE_PERL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "$PROG: unknown option $1 (try -h)" >&2; exit 64 ;;
    *)
        [[ -z $BUILD ]] || { echo "$PROG: more than one BUILD_DIR" >&2; exit 64; }
        BUILD=$1
        shift
        ;;
    esac
done
if (($#)); then
    [[ -z $BUILD && $# -eq 1 ]] || { echo "$PROG: unexpected arguments: $*" >&2; exit 64; }
    BUILD=$1
fi
if ((RUN_MATRIX == 0 && RUN_MEMORY == 0)); then
    echo "$PROG: --memory and --no-memory together leave nothing to run" >&2
    exit 64
fi

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }

[[ $DURATION =~ ^[0-9]+([.][0-9]+)?$ ]] || die "DURATION must be a number of seconds, got '$DURATION'"
for n in $CONNS; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "CONNS must be positive numbers, got '$CONNS'"; done
for e in $ENGINES; do [[ $e =~ ^[A-Za-z]+$ ]] || die "bad engine name '$e'"; done

# --- what is needed -------------------------------------------------------------------------
if [[ -z $BUILD ]]; then
    for d in "$SRC_DIR/build" "$SRC_DIR"; do
        if [[ -x $d/mtpolicyd && -x $d/mtpolicyd-bench ]]; then BUILD=$d; break; fi
    done
    [[ -n $BUILD ]] || die "no BUILD_DIR given and none found with mtpolicyd and mtpolicyd-bench (make mtpolicyd mtpolicyd-bench)"
fi
BUILD=$(cd "$BUILD" && pwd)
OURS=$BUILD/mtpolicyd
BENCH=$BUILD/mtpolicyd-bench
[[ -x $OURS ]] || die "$OURS not found: build it (make mtpolicyd)"
[[ -x $BENCH ]] || die "$BENCH not found: build it (make mtpolicyd-bench)"

missing=()
need_prog() { # program, Debian package
    command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]] || missing+=("$2 (for $1)")
}
need_prog python3 python3
need_prog mariadbd mariadb-server
need_prog mariadb-install-db mariadb-server
need_prog mariadb mariadb-client
((${#missing[@]} == 0)) || die "missing: ${missing[*]}; apt-get install the package(s)"
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
INSTALL_DB=$(command -v mariadb-install-db || echo /usr/sbin/mariadb-install-db)
[[ $(id -u) -eq 0 ]] || say "warning: not root; MariaDB and the fd limit may not work"

PERL_NOTE=""
if ((USE_PERL == 0)); then
    PERL_NOTE="Perl mtpolicyd left out (--no-perl)"
elif [[ ! -x $PERL_MTPOLICYD ]]; then
    USE_PERL=0
    PERL_NOTE="Perl mtpolicyd not found at $PERL_MTPOLICYD (Debian package mtpolicyd): no Perl column"
elif ! perl -MMail::MtPolicyd -e1 2>/dev/null; then
    USE_PERL=0
    PERL_NOTE="Perl module Mail::MtPolicyd does not load (Debian package mtpolicyd): no Perl column"
fi
PERL_HOWTO=$USE_PERL
if ((USE_PERL)) && ! perl -MDBD::mysql -e1 2>/dev/null; then
    PERL_HOWTO=0
    PERL_NOTE="DBD::mysql missing (Debian package libdbd-mysql-perl): no Perl figures for the howto rows"
fi
[[ -z $PERL_NOTE ]] || say "$PERL_NOTE"

bench_has() { "$BENCH" --help 2>&1 | grep -q -- "$1"; }
HAVE_CEILING_SQL=0; bench_has --ceiling-sql && HAVE_CEILING_SQL=1
HAVE_LIST_CLIENTS=0; bench_has --list-clients && HAVE_LIST_CLIENTS=1
HAVE_IDLE=0; bench_has '--idle N' && HAVE_IDLE=1
HAVE_MACHINE_COSTS=0; bench_has --machine-costs && HAVE_MACHINE_COSTS=1
HAVE_MERGE_SELECTS=0; bench_has --merge-selects && HAVE_MERGE_SELECTS=1
# --ceiling-sql may be listed in the help before it works: probe it with a bad socket below.

# --- temp dir, output dir, cleanup -------------------------------------------------------------
T=$(mktemp -d /tmp/mtp-bench.XXXXXX)   # short: the MariaDB socket path must fit sun_path
if [[ -z $OUT ]]; then OUT=$(mktemp -d /tmp/mtp-bench-out.XXXXXX); fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
: >"$OUT/bench-stderr.log"

MYSQLD_PID=""
OURS_PID=""
PERL_PID=""
CLEANED=0

# Descendants of a pid (children, grandchildren...), from /proc.
descendants() {
    local root=$1 f line rest
    local -a st kids=()
    for f in /proc/[0-9]*/stat; do
        { line=$(<"$f"); } 2>/dev/null || continue
        rest=${line##*) }
        read -ra st <<<"$rest"
        if [[ ${st[1]:-} == "$root" ]]; then kids+=("${f//[^0-9]/}"); fi
    done
    local k
    for k in "${kids[@]}"; do
        echo "$k"
        descendants "$k"
    done
}

# Stops pid (TERM, then KILL after 10 s) and any of its descendants that outlive it.
stop_tree() {
    local pid=$1 name=$2 i p
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    local -a kids
    mapfile -t kids < <(descendants "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name ($pid) did not stop on TERM; KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for p in "${kids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            sleep 0.5
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
}

cleanup() {
    local rc=$?
    ((CLEANED)) && return
    CLEANED=1
    trap - EXIT INT TERM
    stop_tree "$OURS_PID" "mtpolicyd"
    stop_tree "$PERL_PID" "Perl mtpolicyd"
    stop_tree "$MYSQLD_PID" "mariadbd"
    local f
    for f in ours.conf perl.conf ours.log perl.log mysqld.err; do
        if [[ -f $T/$f ]]; then cp "$T/$f" "$OUT/" 2>/dev/null || true; fi
    done
    if [[ $KEEP == 1 ]]; then
        say "temp dir kept: $T"
    else
        rm -rf "$T"
    fi
    say "output: $OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START_SECONDS=$SECONDS
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- helper (python3): process trees from /proc, the report ---------------------------------------------
cat >"$T/helper.py" <<'PYEOF'
import json, os, sys

def read_status(pid):
    info = {"pid": pid}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == "PPid": info["ppid"] = int(v)
                elif k == "VmRSS": info["rss_kb"] = int(v.split()[0])
                elif k == "Name": info["comm"] = v.strip()
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"): info["pss_kb"] = int(line.split()[1])
        except OSError:
            pass
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            info["cmdline"] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    info.setdefault("rss_kb", 0)
    return info

def tree(root):
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = read_status(int(d))
            if s: procs[s["pid"]] = s
    out, frontier = [], [root]
    if root in procs: out.append(procs[root])
    while frontier:
        p = frontier.pop()
        for q in sorted(procs.values(), key=lambda x: x["pid"]):
            if q.get("ppid") == p and q["pid"] != root:
                out.append(q); frontier.append(q["pid"])
    return out

def cmd_rss(args):
    # rss LABEL=PID ...: one JSON line with the process trees.
    groups = {}
    for a in args:
        label, _, pid = a.partition("=")
        if pid: groups[label] = tree(int(pid))
    print(json.dumps({"kind": "rss", "groups": groups}))

def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try: recs.append(json.loads(line))
                except ValueError: pass
    return recs

def num(v, nd=0):
    if v is None: return "-"
    return f"{v:.{nd}f}"

def cmd_report(args):
    results, meta_path = args[0], args[1]
    recs = load(results)
    meta = {}
    with open(meta_path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    conns = [int(c) for c in meta["conns"].split()]
    engines = meta["engines"].split()
    clk = float(meta["clk_tck"])
    notes = []
    out = []
    P = out.append

    P("mtpolicyd benchmark")
    P(f"  date     {meta['date']}")
    P(f"  host     {meta['uname']}; {meta['cpu']}; nproc {meta['nproc']}")
    P(f"  command  {meta['command']}")
    P(f"  build    {meta['build']} ({meta['ours_version']})")
    P(f"  peer     {meta['perl']}")
    P(f"  mariadb  {meta['mariadb']} ({meta['mysqld_opts']})")
    P(f"  load     mtpolicyd-bench, {meta['clients']} client addresses, {meta['duration']} s per cell,"
      f" 1 s warm-up per cell; fd limit {meta['nofile']}")
    if meta.get("settle_seconds"):
        P(f"  settle   before each series the other daemon was let go quiet (12 s without process"
          f" changes or CPU): {meta['settle_seconds']} s in all")
    P(f"  loadavg  {meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end"
      + ("  (NOTE: other processes were busy: the figures are noisy)"
         if max(float(meta['loadavg_start'].split()[0]), float(meta['loadavg_end'].split()[0]))
         > 0.5 * int(meta['nproc']) else ""))
    P("")

    def find(**kw):
        for r in recs:
            if all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    def res(r):
        if not r or not isinstance(r.get("result"), dict): return None
        x = r["result"]
        return x if x.get("requests", 0) > 0 else None

    def errs(r):
        x = res(r)
        return x["errors"]["total"] if x else 0

    def mysqld_us(r):
        x = res(r)
        if not x or r.get("mysqld_ticks") is None: return None
        return r["mysqld_ticks"] / clk * 1e6 / x["requests"]

    def odd_actions(r, who):
        x = res(r)
        if not x: return
        odd = {a: n for a, n in x.get("actions", {}).items() if a != "dunno"}
        if odd:
            notes.append(f"{who} {r['chain']} {r['engine']} c={r['conns']} {r['mode']}: "
                         f"actions other than dunno: {odd}")

    if meta.get("matrix") == "1":
        hdr1 = (f"{'':7} {'':6} {'':>3} {'':4} |{'---------- ours ----------':^40}|"
                f"{'----- Perl -----':^24}|{'':6}|{'--- ceiling ---':^20}")
        hdr2 = (f"{'chain':7} {'engine':6} {'c':>3} {'mode':4} |{'req/s':>8} {'p50':>6} {'p99':>7}"
                f" {'cpu/r':>7} {'sql/r':>7} |{'req/s':>8} {'p99':>7} {'cpu/r':>7} |{'x':>5} |"
                f"{'req/s':>8} {'p99':>6} {'%':>4}")
        P(hdr1); P(hdr2); P("-" * len(hdr2))
        rows = [("trivial", "-")] + [("howto", e) for e in engines]
        for chain, engine in rows:
            for mode in ("keep-alive", "new"):
                for c in conns:
                    o = find(kind="cell", who="ours", chain=chain, engine=engine, conns=c, mode=mode)
                    p = find(kind="cell", who="perl", chain=chain, engine=engine, conns=c, mode=mode)
                    ck = "ceiling-protocol" if chain == "trivial" else "ceiling-sql"
                    # The protocol ceiling is measured in both modes; the SQL ceiling has no
                    # connections to open, so new-connection rows compare with it as it is.
                    cl = find(kind="cell", who=ck, chain=chain, engine=engine, conns=c,
                              mode=mode if chain == "trivial" else "keep-alive")
                    xo, xp, xc = res(o), res(p), res(cl)
                    for r, who in ((o, "ours"), (p, "Perl"), (cl, ck)):
                        if r and res(r) and errs(r):
                            e = res(r)["errors"]
                            notes.append(f"* {who} {chain} {engine} c={c} {r['mode']}: "
                                         f"{e['total']} errors {json.dumps(e)}")
                        if r and not res(r):
                            notes.append(f"{who} {chain} {engine} c={c} {r['mode']}: no result"
                                         f" (exit {r.get('exit')}; see bench-stderr.log)")
                    odd_actions(o, "ours"); odd_actions(p, "Perl")
                    for r, who in ((o, "ours"), (p, "Perl"), (cl, ck)):
                        x = res(r)
                        if chain == "howto" and x and r.get("acct_delta") is not None \
                                and r["acct_delta"] != x["requests"]:
                            notes.append(f"{who} {chain} {engine} c={c} {r['mode']}: {x['requests']}"
                                         f" requests answered but acct_client_address counted"
                                         f" {r['acct_delta']}")
                    def rate(x, r):
                        return (num(x["requests_per_s"]) + ("*" if errs(r) else "")) if x else "-"
                    sql_o = num(mysqld_us(o), 1) if chain == "howto" else ""
                    ratio = (f"{xo['requests_per_s'] / xp['requests_per_s']:.1f}"
                             if xo and xp and xp["requests_per_s"] > 0 else "-")
                    pct = (f"{100 * xo['requests_per_s'] / xc['requests_per_s']:.0f}"
                           if xo and xc and xc["requests_per_s"] > 0 else "-")
                    P(f"{chain:7} {engine:6} {c:>3} {('ka' if mode == 'keep-alive' else 'new'):4} |"
                      f"{rate(xo, o):>8} {num(xo and xo['latency_us']['p50']):>6}"
                      f" {num(xo and xo['latency_us']['p99']):>7}"
                      f" {num(xo and xo.get('daemon_cpu_us_per_request'), 1):>7} {sql_o:>7} |"
                      f"{rate(xp, p):>8} {num(xp and xp['latency_us']['p99']):>7}"
                      f" {num(xp and xp.get('daemon_cpu_us_per_request'), 1):>7} |{ratio:>5} |"
                      f"{num(xc and xc['requests_per_s']):>8} {num(xc and xc['latency_us']['p99']):>6}"
                      f" {pct:>4}")
            P("")
        P("c: connections; mode ka = keep-alive, new = one new connection per request; latency in us")
        P("(send -> full reply); cpu/r: CPU us per request of the daemon (master + workers), sql/r:")
        P("of mysqld during the same run; x: ours/Perl req/s; ceiling: at the same c, the protocol")
        P("ceiling in the same mode for trivial, the SQL ceiling (no connections) for howto;")
        P("%: ours req/s of the ceiling.")
        P("The protocol ceiling's responder is one epoll thread: with more than one CPU, a daemon with")
        P("several workers can pass it at higher c. req/s marked * had errors (see notes).")
        P("")

        # The ceilings in detail.
        def md(r):
            return "ka" if r.get("mode") == "keep-alive" else "new"
        P("ceilings")
        P(f"  {'kind':16} {'engine':6} {'c':>3} {'mode':4} {'req/s':>8} {'p50':>6} {'p99':>6}"
          f" {'server cpu/r':>12} {'tool cpu/r':>10}")
        for r in recs:
            if r.get("who", "").startswith("ceiling"):
                x = res(r)
                if not x:
                    P(f"  {r['who']:16} {r['engine']:6} {r['conns']:>3} {md(r):4} {'-':>8}"); continue
                srv = (x.get("responder_cpu_us_per_request") if r["who"] == "ceiling-protocol"
                       else mysqld_us(r))
                P(f"  {r['who']:16} {r['engine']:6} {r['conns']:>3} {md(r):4} {num(x['requests_per_s']):>8}"
                  f" {x['latency_us']['p50']:>6} {x['latency_us']['p99']:>6} {num(srv, 1):>12}"
                  f" {num(x.get('tool_cpu_us_per_request'), 1):>10}")
        P("  server cpu/r: the in-process responder thread (protocol), mysqld (sql); tool cpu/r: the")
        P("  load side of mtpolicyd-bench. In the main table, the daemons' runs had the bench on the")
        P("  same CPUs too: its own CPU per request is in results.jsonl (tool_cpu_us_per_request).")
        P("  ceiling-sql-merged: the two SELECTs as one compound statement (--merge-selects).")
        P("")

    mc = find(kind="machine")
    if mc:
        x = mc.get("result") if isinstance(mc.get("result"), dict) else None
        P("machine costs (mtpolicyd-bench --machine-costs, the daemons idle, before the matrix)")
        if not x:
            P("  - (no result; see bench-stderr.log)")
        else:
            P(f"  system call {num(x.get('syscall_us'), 2)} us; blocking round trip over a unix socket:"
              f" between processes {num(x.get('wakeup_rt_process_wall_us'), 1)} us wall,"
              f" {num(x.get('wakeup_rt_process_cpu_us'), 1)} us CPU per side;")
            P(f"  between threads {num(x.get('wakeup_rt_thread_wall_us'), 1)} us wall,"
              f" {num(x.get('wakeup_rt_thread_cpu_us'), 1)} us CPU per side; as libmariadb waits"
              f" (recv, poll, recv): {num(x.get('nonblocking_rt_cpu_us'), 1)} us CPU per side.")
            wp, wn = x.get("wakeup_rt_process_cpu_us"), x.get("nonblocking_rt_cpu_us")
            if wp and wn:
                P(f"  A kept-alive how-to request sleeps at least four times in the daemon (the request,"
                  f" three database answers): ~{wp + 3 * wn:.0f} us of CPU")
                P(f"  (one round trip + three as libmariadb waits) before any work; a trivial one once.")
        P("")

    rss = [r for r in recs if r.get("kind") == "rss"]
    if rss:
        last = rss[-1]
        P(f"RSS of every process involved ({last.get('when', 'at the end')})")
        P(f"  {'who':8} {'pid':>7} {'ppid':>7} {'rss_kb':>8} {'pss_kb':>8}  process")
        for label, procs in last["groups"].items():
            total = total_pss = 0
            for q in procs:
                total += q.get("rss_kb", 0)
                total_pss += q.get("pss_kb", 0)
                P(f"  {label:8} {q['pid']:>7} {q.get('ppid', 0):>7} {q.get('rss_kb', 0):>8}"
                  f" {q.get('pss_kb', '-'):>8}  {q.get('cmdline', q.get('comm', ''))[:56]}")
            P(f"  {label:8} {'':>7} {'total':>7} {total:>8} {total_pss:>8}  ({len(procs)} processes)")
        P("  rss counts shared pages (the code, copy-on-write memory of the parent) in every process;")
        P("  pss divides them among the processes that share them, so its total is the memory used.")
        P("")

    growth = find(kind="memory-growth")
    if growth:
        x = growth.get("result") if isinstance(growth.get("result"), dict) else None
        P(f"memory (a): worker RSS over {meta['mem_requests']} requests (ours, freshly started, trivial,"
          f" keep-alive, 8 connections, after a {meta['mem_warmup']}-request warm-up)")
        if not x:
            P("  - (no result; see bench-stderr.log)")
        else:
            P(f"  {x['requests']} requests in {x['duration_s']:.1f} s, {x['requests_per_s']:.0f} req/s,"
              f" p99 {x['latency_us']['p99']} us, errors {x['errors']['total']}")
            procs = x.get("processes")
            if procs is None:
                P("  - (this mtpolicyd-bench has no per-process RSS sampling yet)")
            else:
                P(f"  {'pid':>7} {'role':7} {'first_kb':>9} {'last_kb':>9} {'max_kb':>9} {'growth':>7}  whole run")
                root = int(meta.get("ours_pid", 0))
                wmax = 0
                for q in procs:
                    role = "master" if q["pid"] == root else "worker"
                    first, last, mx = q["rss_kb_first"], q["rss_kb_last"], q["rss_kb_max"]
                    g = f"{100.0 * (last - first) / first:+.1f}%" if first else "-"
                    if role == "worker": wmax = max(wmax, mx)
                    P(f"  {q['pid']:>7} {role:7} {first:>9} {last:>9} {mx:>9} {g:>7}  "
                      f"{'yes' if q.get('whole_run') else 'no'}")
                P(f"  max worker RSS: {wmax} kB")
                d = x.get("daemon_rss_kb")
                if d: P(f"  daemon total RSS: first {d['first']} kB, last {d['last']} kB, max {d['max']} kB")
        P("")

    idle = find(kind="memory-idle")
    if idle:
        x = idle.get("result") if isinstance(idle.get("result"), dict) else None
        P(f"memory (b): {meta['idle']} idle keep-alive connections to ours (trivial) plus a load of"
          f" 8 connections for {meta['duration']} s")
        if not x:
            P("  - (no result; see bench-stderr.log)")
        else:
            i = x.get("idle") or {}
            P(f"  idle requested {i.get('requested', '-')}, established {i.get('established', '-')},"
              f" open at end {i.get('open_at_end', '-')}, set up in {num(i.get('setup_s'), 2)} s")
            if isinstance(i.get("established"), int) and isinstance(i.get("open_at_end"), int) \
                    and i["open_at_end"] < i["established"]:
                P(f"  the daemon closed {i['established'] - i['open_at_end']} of the idle connections"
                  f" during the run")
            P(f"  load: {x['requests_per_s']:.0f} req/s, p50 {x['latency_us']['p50']} us,"
              f" p99 {x['latency_us']['p99']} us, max {x['latency_us']['max']} us,"
              f" errors {x['errors']['total']}")
            d = x.get("daemon_rss_kb")
            if d:
                P(f"  daemon total RSS (master + workers): first {d['first']} kB, last {d['last']} kB,"
                  f" max {d['max']} kB")
            procs = x.get("processes")
            if procs:
                P(f"  processes: {len(procs)} ({sum(1 for q in procs if q.get('whole_run'))} for the whole"
                  f" run); per process last RSS kB: "
                  + ", ".join(f"{q['pid']}={q['rss_kb_last']}" for q in procs))
        P("")
    if idle is None and meta.get("idle_note"):
        P(f"memory (b): {meta['idle_note']}"); P("")

    for k in ("perl_note", "ceiling_note", "extra_note"):
        if meta.get(k): notes.append(meta[k])
    if notes:
        P("notes")
        for n in notes: P(f"  {n}")
        P("")
    P(f"raw results: {results}")
    P(f"total time: {meta.get('elapsed', '?')} s")
    print("\n".join(out))

if __name__ == "__main__":
    {"rss": cmd_rss, "report": cmd_report}[sys.argv[1]](sys.argv[2:])
PYEOF
py() { python3 "$T/helper.py" "$@"; }

# --- free loopback ports ----------------------------------------------------------------------
port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemons do: TIME_WAIT is fine
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
# Two consecutive free ports from $1 up.
free_pair() {
    local p=$1
    while ! { port_free "$p" && port_free $((p + 1)); }; do
        p=$((p + 2))
        ((p < 65000)) || die "no free loopback ports"
    done
    echo "$p"
}
OURS_P1=$(free_pair 23451); OURS_P2=$((OURS_P1 + 1))
PERL_P1=$(free_pair 23461); PERL_P2=$((PERL_P1 + 1))
[[ $PERL_P1 != "$OURS_P1" && $PERL_P1 != "$OURS_P2" ]] || { PERL_P1=$(free_pair $((OURS_P2 + 1))); PERL_P2=$((PERL_P1 + 1)); }

# --- fd limit (10,000 idle connections need more than 1024) -------------------------------------
if ! ulimit -n 65536 2>/dev/null; then
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=65536
    ulimit -n "$hard"
    say "ulimit -n 65536 not permitted here; using the hard limit $hard"
fi
NOFILE=$(ulimit -n)

# --- MariaDB -------------------------------------------------------------------------------
say "starting a private MariaDB in $T"
"$INSTALL_DB" --no-defaults --auth-root-authentication-method=normal --skip-test-db \
    --datadir="$T/data" --user=root >"$T/install-db.log" 2>&1 ||
    { tail -n 20 "$T/install-db.log" >&2; die "mariadb-install-db failed"; }
# shellcheck disable=SC2086  # MYSQLD_OPTS is a list of options
"$MARIADBD" --no-defaults --datadir="$T/data" --socket="$T/sock" --skip-networking --user=root \
    --pid-file="$T/mysqld.pid" --log-error="$T/mysqld.err" --innodb-buffer-pool-size=256M \
    $MYSQLD_OPTS >/dev/null 2>&1 &
MYSQLD_PID=$!
sql() { mariadb --no-defaults --socket="$T/sock" -uroot "$@"; }
for ((i = 0; i < 600; i++)); do
    sql -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$MYSQLD_PID" 2>/dev/null || { tail -n 20 "$T/mysqld.err" >&2; die "mariadbd exited"; }
    sleep 0.1
done
sql -e 'SELECT 1' >/dev/null 2>&1 || die "mariadbd did not answer on $T/sock within 60 s"

# The tables of sql/mysql.sql (acct_client_address is recreated per engine below), one
# policy that never defers and a relay_hosts row for every client address of the load.
MYSQL_SQL=$SRC_DIR/sql/mysql.sql
[[ -f $MYSQL_SQL ]] || die "$MYSQL_SQL not found"
sql -e 'CREATE DATABASE mtpolicyd CHARACTER SET utf8mb4'
sql mtpolicyd <"$MYSQL_SQL"
# shellcheck disable=SC2016  # the backquotes are SQL's
ACCT_DDL=$(sed -n '/^CREATE TABLE IF NOT EXISTS `acct_client_address`/,/;$/p' "$MYSQL_SQL")
[[ $ACCT_DDL == *ENGINE=InnoDB* ]] || die "could not find the acct_client_address table in $MYSQL_SQL"
if ((HAVE_LIST_CLIENTS)); then
    mapfile -t CLIENT_ADDRS < <("$BENCH" --list-clients --clients "$CLIENTS")
else
    # Same formula as mtpolicyd-bench's clientAddress() until it has --list-clients.
    mapfile -t CLIENT_ADDRS < <(python3 -c '
import sys
p = ["192.0.2.", "198.51.100.", "203.0.113."]
for i in range(int(sys.argv[1])): print(p[i % 3] + str(i // 3 % 254 + 1))' "$CLIENTS")
fi
((${#CLIENT_ADDRS[@]} > 0)) || die "no client addresses from mtpolicyd-bench --list-clients"
{
    echo "INSERT INTO relay_policies (id, name, config) VALUES (1, 'bench', '{\"quota_count\":\"1000000000\"}');"
    for a in "${CLIENT_ADDRS[@]}"; do
        [[ $a =~ ^[0-9a-fA-F.:]+$ ]] || die "odd client address '$a'"
        echo "INSERT IGNORE INTO relay_hosts (client_address, relay_policy) VALUES ('$a', 1);"
    done
} | sql mtpolicyd

# shellcheck disable=SC2016  # the backquotes are SQL's
INSTANCES_DDL=$(sed -n '/^CREATE TABLE IF NOT EXISTS `acct_instances`/,/;$/p' "$MYSQL_SQL")
[[ $INSTANCES_DDL == *ENGINE=InnoDB* ]] || die "could not find the acct_instances table in $MYSQL_SQL"

# Waits (at most 60 s) until mysqld has used less than 5% of a CPU for a second: InnoDB
# purges and flushes in the background after a write-heavy series, and that work would be
# charged to (and slow down) the next engine's series.
mysqld_settle() {
    local hz t0 t1 i
    hz=$(getconf CLK_TCK)
    for ((i = 0; i < 60; i++)); do
        t0=$(awk '{print $14 + $15}' "/proc/$MYSQLD_PID/stat" 2>/dev/null) || return 0
        sleep 1
        t1=$(awk '{print $14 + $15}' "/proc/$MYSQLD_PID/stat" 2>/dev/null) || return 0
        ((100 * (t1 - t0) < 5 * hz)) && break
    done
    say "mysqld quiet after $((i + 1)) s"
}

set_engine() {
    sql mtpolicyd -e "DROP TABLE IF EXISTS acct_instances; ${INSTANCES_DDL/ENGINE=InnoDB/ENGINE=$1}"
    sql mtpolicyd -e "DROP TABLE IF EXISTS acct_client_address; ${ACCT_DDL/ENGINE=InnoDB/ENGINE=$1}"
    sql -N mtpolicyd -e "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA='mtpolicyd' AND TABLE_NAME='acct_client_address'"
}
FIRST_ENGINE=${ENGINES%% *}
[[ $(set_engine "$FIRST_ENGINE") == "$FIRST_ENGINE" ]] || die "MariaDB has no engine $FIRST_ENGINE"

# --- configs --------------------------------------------------------------------------------
DSN="dbi:mysql:database=mtpolicyd;mysql_socket=$T/sock"
HOWTO_QUERY='SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id) WHERE h.client_address=?'
# Ours keeps idle connections longer than any run (the idle-connection run included).
OURS_KEEPALIVE=$(python3 -c 'import sys; print(max(330, int(float(sys.argv[1])) + 300))' "$DURATION")

cat >"$T/ours.conf" <<EOF
# mtpolicyd (ours) for tests/bench/run.sh: default workers, no logging below errors.
log_level = 0;
pid_file = "$T/mtpolicyd.pid";
port = [ "127.0.0.1:$OURS_P1", "127.0.0.1:$OURS_P2" ];
keepalive_timeout = $OURS_KEEPALIVE;

connections = {
  db = { module = "Sql"; dsn = "$DSN"; user = "root"; password = ""; };
};

virtual_hosts = (
  {
    name = "trivial";
    port = "$OURS_P1";
    plugins = (
      { name = "dunno"; module = "Action"; action = "dunno"; }
    );
  },
  {
    name = "accounting";
    port = "$OURS_P2";
    plugins = (
      { name = "QuotaPolicyConfig"; module = "SqlUserConfig";
        sql_query = "$HOWTO_QUERY";
        field = "client_address"; },
      { name = "QuotaIP"; module = "Quota";
        field = "client_address"; metric = "count";
        threshold = 1000; uc_threshold = "quota_count";
        action = "defer you exceeded your monthly limit, please insert coin"; },
      { name = "AcctIP"; module = "Accounting"; fields = "client_address"; }
    );
  }
);
EOF

if ((USE_PERL)); then
    PERL_PORTS="127.0.0.1:$PERL_P1"
    if ((PERL_HOWTO)); then PERL_PORTS+=",127.0.0.1:$PERL_P2"; fi
    {
        cat <<EOF
# Perl mtpolicyd 2.05 for tests/bench/run.sh (Config::General). No SessionCache block: none.
log_level=0
pid_file="$T/perl-mtpolicyd.pid"
host=127.0.0.1
port="$PERL_PORTS"
min_servers=4
min_spare_servers=4
max_spare_servers=12
max_servers=50
max_requests=1000
keepalive_timeout=60
max_keepalive=0
request_timeout=20

<VirtualHost $PERL_P1>
  name="trivial"
  <Plugin dunno>
    module = "Action"
    action = "dunno"
  </Plugin>
</VirtualHost>
EOF
        if ((PERL_HOWTO)); then
            cat <<EOF

<Connection db>
  module = "Sql"
  dsn = "$DSN"
  user = "root"
  password = ""
</Connection>

<VirtualHost $PERL_P2>
  name="accounting"
  <Plugin QuotaPolicyConfig>
    module = "SqlUserConfig"
    sql_query = "$HOWTO_QUERY"
    field = "client_address"
  </Plugin>
  <Plugin QuotaIP>
    module = "Quota"
    field = "client_address"
    metric = "count"
    threshold = 1000
    uc_threshold = "quota_count"
    action = "defer you exceeded your monthly limit, please insert coin"
  </Plugin>
  <Plugin AcctIP>
    module = "Accounting"
    fields = "client_address"
  </Plugin>
</VirtualHost>
EOF
        fi
    } >"$T/perl.conf"
fi

# --- daemons ------------------------------------------------------------------------------
# Waits until PORT answers one request; 0 when it does, 1 when pid died or 60 s passed.
wait_ready() {
    local port=$1 pid=$2 i
    for ((i = 0; i < 240; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if "$BENCH" -H "127.0.0.1:$port" -c 1 -n 1 -t 5 --json >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    return 1
}

# Starts ours; with "howto", also waits for the accounting port (which opens a database
# connection in one worker).
start_ours() {
    say "starting our mtpolicyd on 127.0.0.1:$OURS_P1/$OURS_P2"
    "$OURS" -f -c "$T/ours.conf" >>"$T/ours.log" 2>&1 &
    OURS_PID=$!
    if ! wait_ready "$OURS_P1" "$OURS_PID" ||
        { [[ ${1:-} == howto ]] && ! wait_ready "$OURS_P2" "$OURS_PID"; }; then
        tail -n 20 "$T/ours.log" >&2
        die "our mtpolicyd did not answer (log: $T/ours.log)"
    fi
}
: >"$T/ours.log"
if ((RUN_MATRIX)); then start_ours howto; else start_ours; fi

if ((USE_PERL && RUN_MATRIX)); then
    say "starting the Perl mtpolicyd on 127.0.0.1:$PERL_P1/$PERL_P2"
    "$PERL_MTPOLICYD" -f -c "$T/perl.conf" >"$T/perl.log" 2>&1 &
    PERL_PID=$!
    if ! wait_ready "$PERL_P1" "$PERL_PID" || { ((PERL_HOWTO)) && ! wait_ready "$PERL_P2" "$PERL_PID"; }; then
        tail -n 20 "$T/perl.log" >&2
        say "the Perl mtpolicyd did not answer; running without the Perl column (log: perl.log)"
        stop_tree "$PERL_PID" "Perl mtpolicyd"
        PERL_PID=""
        USE_PERL=0
        PERL_HOWTO=0
        PERL_NOTE="the Perl mtpolicyd did not start or answer (see perl.log): no Perl column"
    fi
fi

# --- measuring --------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of pid (all its threads), in clock ticks
    local line rest
    line=$(<"/proc/$1/stat") || { echo 0; return; }
    rest=${line##*) }
    local -a f
    read -ra f <<<"$rest"
    echo $((f[11] + f[12]))
}

# Messages counted so far in acct_client_address (to check that every answered how-to request
# was counted, i.e. that all three statements ran).
acct_count() { sql -N mtpolicyd -e 'SELECT COALESCE(SUM(count), 0) FROM acct_client_address'; }

# record JSON_FIELDS CMD...: runs a bench command, appends one line to results.jsonl with the
# given fields, the exit status, mysqld's CPU ticks during the run, for the howto chain the
# growth of the accounting count, and the bench's JSON.
record() {
    local tags=$1 out rc=0 before after line
    shift
    local acct_before="" acct_delta=null
    if [[ $tags == *'"chain":"howto"'* ]]; then acct_before=$(acct_count); fi
    before=$(cpu_ticks "$MYSQLD_PID")
    out=$("$@" 2>>"$OUT/bench-stderr.log") || rc=$?
    after=$(cpu_ticks "$MYSQLD_PID")
    if [[ -n $acct_before ]]; then acct_delta=$(($(acct_count) - acct_before)); fi
    line=$(printf '%s\n' "$out" | grep '^{' | tail -n 1 || true)
    [[ -n $line ]] || line=null
    printf '{%s,"exit":%d,"mysqld_ticks":%d,"acct_delta":%s,"result":%s}\n' \
        "$tags" "$rc" $((after - before)) "$acct_delta" "$line" >>"$RESULTS"
    local rate=- errors=- re_rate='"requests_per_s":([0-9.]+)' re_err='"errors":\{"total":([0-9]+)'
    if [[ $line =~ $re_rate ]]; then rate=${BASH_REMATCH[1]}; fi
    if [[ $line =~ $re_err ]]; then errors=${BASH_REMATCH[1]}; fi
    say "  ${tags//\"/} -> $rate req/s, errors $errors"
}

fields() { # who chain engine conns mode
    printf '"kind":"cell","who":"%s","chain":"%s","engine":"%s","conns":%d,"mode":"%s"' "$@"
}


# settle PID...: waits until the process trees of the given daemons have kept the same
# processes for 12 s while using next to no CPU (at most 60 s). After a load, a prefork
# daemon stops its spare workers some seconds later (the Perl mtpolicyd 30 at once): done
# during the other daemon's cells, that cost them up to three quarters of their rate in
# the new-connection cells. Then the peer's housekeeping is over before a series starts.
settle() {
    local stable=0 waited=0 prev="" now ticks p
    local -a roots=() tree
    for p in "$@"; do [[ -n $p ]] && roots+=("$p"); done
    ((${#roots[@]})) || return 0
    while ((waited < 60)); do
        tree=()
        for p in "${roots[@]}"; do tree+=("$p"); mapfile -t -O "${#tree[@]}" tree < <(descendants "$p"); done
        ticks=0
        for p in "${tree[@]}"; do ticks=$((ticks + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
        now="${tree[*]}"
        if [[ -n $prev && $now == "${prev%%:*}" && $((ticks - ${prev##*:})) -le 2 ]]; then
            stable=$((stable + 1))
            ((stable < 12)) || break
        else
            stable=0
        fi
        prev="$now:$ticks"
        sleep 1
        waited=$((waited + 1))
    done
    ((waited < 60)) || say "  daemons not quiet after 60 s; going on"
    SETTLE_SECONDS=$((SETTLE_SECONDS + waited))
}
SETTLE_SECONDS=0

# One series: per N a 1 s warm-up at that N, then the cell. (A single warm-up at the largest
# N left the smaller cells running beside the extra workers it had made the master start.)
series() { # who chain engine mode port pid
    local who=$1 chain=$2 engine=$3 mode=$4 port=$5 pid=$6 n
    local -a modeopt=()
    [[ $mode == new ]] && modeopt=(--new-connection)
    if [[ $who == ours ]]; then settle "$PERL_PID"; else settle "$OURS_PID"; fi
    for n in $CONNS; do
        "$BENCH" -H "127.0.0.1:$port" -c "$n" "${modeopt[@]}" -d 1 --clients "$CLIENTS" \
            --json >>"$OUT/warmup.jsonl" 2>>"$OUT/bench-stderr.log" || true
        record "$(fields "$who" "$chain" "$engine" "$n" "$mode")" \
            "$BENCH" -H "127.0.0.1:$port" -c "$n" "${modeopt[@]}" -d "$DURATION" \
            --clients "$CLIENTS" --daemon-pid "$pid" --json
    done
}

if ((HAVE_MACHINE_COSTS && RUN_MATRIX)); then
    say "machine costs (mtpolicyd-bench --machine-costs)"
    record '"kind":"machine","who":"-","chain":"-","engine":"-","conns":0,"mode":"-"' \
        "$BENCH" --machine-costs --json
fi

CEILING_NOTE=""
if ((RUN_MATRIX)); then
    say "trivial chain"
    for mode in keep-alive new; do
        series ours trivial - "$mode" "$OURS_P1" "$OURS_PID"
        if ((USE_PERL)); then series perl trivial - "$mode" "$PERL_P1" "$PERL_PID"; fi
    done
    say "protocol ceiling"
    settle "$OURS_PID" "$PERL_PID"
    for mode in keep-alive new; do
        modeopt=()
        [[ $mode == new ]] && modeopt=(--new-connection)
        for n in $CONNS; do
            record "$(fields ceiling-protocol trivial - "$n" "$mode")" \
                "$BENCH" --ceiling-protocol "${modeopt[@]}" -c "$n" -d "$DURATION" --clients "$CLIENTS" --json
        done
    done

    for engine in $ENGINES; do
        got=$(set_engine "$engine")
        if [[ $got != "$engine" ]]; then
            say "MariaDB has no engine $engine (got '$got'); skipped"
            CEILING_NOTE+="engine $engine not available in this MariaDB; "
            continue
        fi
        # Our workers look up each accounting table's engine once (one compound statement
        # per message on InnoDB, the statements one by one on MyISAM): after set_engine
        # replaced the tables under them, a fresh daemon, as an admin would reload it.
        if [[ $engine != "$FIRST_ENGINE" ]]; then
            stop_tree "$OURS_PID" "mtpolicyd"
            start_ours howto
        fi
        mysqld_settle
        say "howto chain, acct_client_address $engine"
        for mode in keep-alive new; do
            series ours howto "$engine" "$mode" "$OURS_P2" "$OURS_PID"
            if ((PERL_HOWTO)); then series perl howto "$engine" "$mode" "$PERL_P2" "$PERL_PID"; fi
        done
        if ((HAVE_CEILING_SQL)); then
            say "SQL ceiling ($engine)"
            settle "$OURS_PID" "$PERL_PID"
            for n in $CONNS; do
                record "$(fields ceiling-sql howto "$engine" "$n" keep-alive)" \
                    "$BENCH" --ceiling-sql --mysql-socket "$T/sock" --mysql-db mtpolicyd \
                    --mysql-user root -c "$n" -d "$DURATION" --clients "$CLIENTS" \
                    --daemon-pid "$MYSQLD_PID" --json
            done
            if ((HAVE_MERGE_SELECTS)); then
                # The same with the two SELECTs merged into one compound statement (one round
                # trip fewer), at 8 connections: does a merged read pay on this machine?
                record "$(fields ceiling-sql-merged howto "$engine" 8 keep-alive)" \
                    "$BENCH" --ceiling-sql --merge-selects --mysql-socket "$T/sock" --mysql-db mtpolicyd \
                    --mysql-user root -c 8 -d "$DURATION" --clients "$CLIENTS" \
                    --daemon-pid "$MYSQLD_PID" --json
            fi
        else
            CEILING_NOTE="this mtpolicyd-bench has no --ceiling-sql yet: no SQL ceiling for the howto rows"
        fi
    done

    rss_args=("ours=$OURS_PID")
    if [[ -n $PERL_PID ]]; then rss_args+=("perl=$PERL_PID"); fi
    rss_args+=("mysqld=$MYSQLD_PID")
    py rss "${rss_args[@]}" | sed 's/^{/{"when":"after the throughput matrix",/' >>"$RESULTS"
    # The Perl daemon's part is over: its workers would only compete for the CPUs.
    stop_tree "$PERL_PID" "Perl mtpolicyd"
    PERL_PID=""
fi

IDLE_NOTE=""
if ((RUN_MEMORY)); then
    # A fresh daemon, so that the memory part does not depend on what the matrix left behind
    # (how many workers, how close each is to max_requests).
    if ((RUN_MATRIX)); then
        say "restarting our mtpolicyd for the memory part"
        stop_tree "$OURS_PID" "mtpolicyd"
        start_ours
    fi
    say "memory (a): warm-up $MEM_WARMUP requests, then $MEM_REQUESTS requests (ours, trivial, keep-alive, 8 connections)"
    "$BENCH" -H "127.0.0.1:$OURS_P1" -c 8 -n "$MEM_WARMUP" --clients "$CLIENTS" --json \
        >/dev/null 2>>"$OUT/bench-stderr.log" || true
    record '"kind":"memory-growth","who":"ours","chain":"trivial","engine":"-","conns":8,"mode":"keep-alive"' \
        "$BENCH" -H "127.0.0.1:$OURS_P1" -c 8 -n "$MEM_REQUESTS" --clients "$CLIENTS" \
        --daemon-pid "$OURS_PID" --json

    if ((!HAVE_IDLE)); then
        IDLE_NOTE="skipped: this mtpolicyd-bench has no --idle yet"
    elif ((NOFILE < IDLE + 200)); then
        IDLE_NOTE="skipped: the fd limit ($NOFILE) is too small for $IDLE idle connections"
    else
        say "memory (b): $IDLE idle keep-alive connections + 8 loading for $DURATION s"
        record '"kind":"memory-idle","who":"ours","chain":"trivial","engine":"-","conns":8,"mode":"keep-alive"' \
            "$BENCH" -H "127.0.0.1:$OURS_P1" --idle "$IDLE" -c 8 -d "$DURATION" \
            --clients "$CLIENTS" --daemon-pid "$OURS_PID" --json
    fi
    [[ -z $IDLE_NOTE ]] || say "memory (b) $IDLE_NOTE"
fi

# --- report ---------------------------------------------------------------------------------
perl_desc="none${PERL_NOTE:+ ($PERL_NOTE)}"
if ((RUN_MATRIX == 0)); then
    perl_desc="not used by the memory part"
elif ((USE_PERL)); then
    perl_desc="Perl mtpolicyd $(perl -MMail::MtPolicyd -e 'print $Mail::MtPolicyd::VERSION' 2>/dev/null || echo '?')"
    perl_desc+=" ($PERL_MTPOLICYD; min_servers 4, max_servers 50, keepalive_timeout 60, no session cache)"
fi
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
env_prefix="DURATION=$DURATION ENGINES=\"$ENGINES\""
[[ $CONNS == "1 8 32" ]] || env_prefix+=" CONNS=\"$CONNS\""
[[ -z $MYSQLD_OPTS ]] || env_prefix+=" MYSQLD_OPTS=\"$MYSQLD_OPTS\""
[[ $PERL_MTPOLICYD == /usr/bin/mtpolicyd ]] || env_prefix+=" PERL_MTPOLICYD=$PERL_MTPOLICYD"
[[ $CLIENTS == 100 ]] || env_prefix+=" CLIENTS=$CLIENTS"
((RUN_MEMORY == 0)) || env_prefix+=" MEM_REQUESTS=$MEM_REQUESTS MEM_WARMUP=$MEM_WARMUP IDLE=$IDLE"
{
    echo "date=$(date -R)"
    echo "uname=$(uname -srm)"
    echo "cpu=${cpu_model:-unknown CPU}"
    echo "nproc=$(nproc)"
    echo "command=$env_prefix $COMMAND_LINE"
    echo "build=$BUILD"
    echo "ours_version=$("$OURS" -V 2>&1 | head -n 1)"
    echo "perl=$perl_desc"
    echo "mariadb=$("$MARIADBD" --version 2>&1 | head -n 1 | sed 's/^.*Ver //')"
    echo "mysqld_opts=--innodb-buffer-pool-size=256M${MYSQLD_OPTS:+ $MYSQLD_OPTS}, otherwise defaults"
    echo "duration=$DURATION"
    echo "engines=$ENGINES"
    echo "conns=$CONNS"
    echo "clients=$CLIENTS"
    echo "clk_tck=$CLK_TCK"
    echo "nofile=$NOFILE"
    echo "matrix=$RUN_MATRIX"
    echo "mem_requests=$MEM_REQUESTS"
    echo "mem_warmup=$MEM_WARMUP"
    echo "idle=$IDLE"
    echo "idle_note=$IDLE_NOTE"
    echo "ours_pid=$OURS_PID"
    echo "perl_note=$PERL_NOTE"
    echo "ceiling_note=${CEILING_NOTE%; }"
    echo "elapsed=$((SECONDS - START_SECONDS))"
    echo "settle_seconds=$SETTLE_SECONDS"
    echo "loadavg_start=$LOADAVG_START"
    echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/meta.txt"
py report "$RESULTS" "$OUT/meta.txt" | tee "$OUT/report.txt"
