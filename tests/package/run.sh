#!/bin/bash
# tests/package/run.sh: builds the Debian package from a release tarball and tests it on this
# machine (not part of the test suite). As root, on Debian 12:
#
#   tests/package/run.sh [BUILD_DIR]
#
# BUILD_DIR is a build directory (default: ./build of the source tree; configured here when
# it has no Makefile). The steps: `make dist` there -> unpack the tarball in a temp dir ->
# install the build dependencies (apt-get build-dep) -> dpkg-buildpackage -us -uc -b ->
# lintian (when installed; errors fail) -> apt-get install the .deb (a policy-rc.d keeps
# the maintainer scripts from starting the daemon) -> checks of the installation -> the
# init script: start, a query with policyd-client on both ports of the packaged
# configuration, reload, status, restart, stop -> the cron command as user mtpolicyd ->
# apt-get purge -> nothing left running, state removed, user mtpolicyd kept.
#
# The package replaces the Perl mtpolicyd package of the same name. When that was installed
# before, it is installed again at the end (with libdbd-mysql-perl, as tests/bench/run.sh
# uses it), and /etc/mtpolicyd/mtpolicyd.conf is put back as it was; also after a failure.
# KEEP=1 keeps the temp dir (it is kept anyway when a step failed).
#
# Every step prints PASS or FAIL; the last line is "package: N passed, N failed".
set -u

SRC_DIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
KEEP=${KEEP:-0}
APT=(apt-get -y -q -o DPkg::Lock::Timeout=300)
export DEBIAN_FRONTEND=noninteractive
start_time=$(date +%s)

passed=0
failed=0
step=0
say() { printf '%s\n' "$*"; }
pass() { passed=$((passed + 1)); say "  PASS: $*"; }
fail() { failed=$((failed + 1)); say "  FAIL: $*"; }
# check DESCRIPTION COMMAND...: PASS when COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
begin() {
    step=$((step + 1))
    say ""
    say "== $step. $*"
}
# run LOG COMMAND...: runs COMMAND with its output in LOG; on failure shows the end of it.
run() {
    local log=$1
    shift
    if "$@" >"$log" 2>&1; then
        return 0
    fi
    local rc=$?
    say "  (exit status $rc; last lines of $log:)"
    tail -n 25 "$log" | sed 's/^/    | /'
    return "$rc"
}
# contains TEXT PATTERN: grep -q PATTERN in TEXT
contains() { printf '%s\n' "$1" | grep -q -- "$2"; }
# Processes running our binary (also after the package removed it), whoever started them.
our_procs() {
    local p exe
    for p in $(pgrep -u mtpolicyd 2>/dev/null); do
        exe=$(readlink "/proc/$p/exe" 2>/dev/null)
        case "$exe" in /usr/bin/mtpolicyd|"/usr/bin/mtpolicyd (deleted)") printf '%s ' "$p" ;; esac
    done
}
finish() {
    cleanup
    trap - EXIT
    local elapsed=$(($(date +%s) - start_time))
    say ""
    say "time: ${elapsed}s"
    say "package: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: run as root (it installs and removes packages)" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/mtpolicyd-pkg.XXXXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS"
say "package test: source $SRC_DIR, build dir $BUILD_DIR, work dir $WORK"

# --- what is there before: restored by cleanup ---------------------------------------------
perl_version=""
if dpkg-query -W -f='${Status}' mtpolicyd 2>/dev/null | grep -q "ok installed"; then
    v=$(dpkg-query -W -f='${Version}' mtpolicyd)
    if [ "$(head -c 64 /usr/bin/mtpolicyd 2>/dev/null | head -n 1 | grep -c perl)" -eq 1 ]; then
        perl_version=$v
        say "the Perl mtpolicyd $perl_version is installed: it is replaced, and installed again at the end"
        [ -f /etc/mtpolicyd/mtpolicyd.conf ] && cp -p /etc/mtpolicyd/mtpolicyd.conf "$WORK/perl-mtpolicyd.conf"
    else
        say "mtpolicyd $v is installed and is not the Perl one: it is replaced and not restored"
    fi
fi
policy=/usr/sbin/policy-rc.d
saved_policy=""
if [ -e "$policy" ]; then
    saved_policy=$WORK/policy-rc.d.saved
    cp -p "$policy" "$saved_policy"
fi

cleanup() {
    # Our daemon and package go, whatever happened.
    if dpkg-query -W -f='${Version}' mtpolicyd 2>/dev/null | grep -q '+cpp'; then
        say ""
        say "cleanup: removing our package"
        /etc/init.d/mtpolicyd stop >/dev/null 2>&1
        "${APT[@]}" purge mtpolicyd >"$LOGS/cleanup-purge.log" 2>&1 || say "cleanup: purge failed, see $LOGS/cleanup-purge.log"
    fi
    if [ -n "$perl_version" ] && ! dpkg-query -W -f='${Status}' mtpolicyd 2>/dev/null | grep -q "ok installed"; then
        say "cleanup: installing the Perl mtpolicyd $perl_version again"
        "${APT[@]}" install --no-install-recommends "mtpolicyd=$perl_version" libdbd-mysql-perl >"$LOGS/cleanup-perl.log" 2>&1 \
            || say "cleanup: failed, see $LOGS/cleanup-perl.log"
    fi
    if [ -n "$saved_policy" ]; then
        cp -p "$saved_policy" "$policy"
    else
        rm -f "$policy"
    fi
    if [ "$KEEP" = 1 ] || [ "$failed" -ne 0 ]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. the release tarball ------------------------------------------------------------------
begin "make dist in $BUILD_DIR"
if [ ! -f "$BUILD_DIR/Makefile" ]; then
    if [ ! -x "$SRC_DIR/configure" ]; then
        (cd "$SRC_DIR" && autoreconf -fi) >"$LOGS/autoreconf.log" 2>&1
    fi
    mkdir -p "$BUILD_DIR"
    (cd "$BUILD_DIR" && "$SRC_DIR/configure" --quiet) >"$LOGS/configure.log" 2>&1
fi
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$BUILD_DIR/Makefile" 2>/dev/null)
tarball=$BUILD_DIR/mtpolicyd-$version.tar.gz
rm -f "$tarball"
if run "$LOGS/dist.log" make -C "$BUILD_DIR" --no-print-directory dist && [ -f "$tarball" ]; then
    pass "made $tarball"
else
    fail "make dist"
    finish
fi

begin "unpack the tarball in $WORK"
tar -C "$WORK" -xzf "$tarball"
SRC=$WORK/mtpolicyd-$version
check "debian/ is in the tarball" test -f "$SRC/debian/control" -a -f "$SRC/debian/rules"
check "debian/mtpolicyd.init is the script of conf/" cmp -s "$SRC/debian/mtpolicyd.init" "$SRC/conf/mtpolicyd.init"
deb_version=$(cd "$SRC" && dpkg-parsechangelog -S Version)
say "  package version $deb_version (upstream $version)"
case "$deb_version" in
    *"$version") pass "debian/changelog is for upstream version $version" ;;
    *) fail "debian/changelog ($deb_version) is not for upstream version $version" ;;
esac
if [ -n "$perl_version" ] && dpkg --compare-versions "$deb_version" gt "$perl_version"; then
    pass "$deb_version is newer than the Perl package's $perl_version"
elif [ -n "$perl_version" ]; then
    fail "$deb_version is not newer than the Perl package's $perl_version"
fi

# --- 2. build ----------------------------------------------------------------------------------
begin "install the build dependencies (apt-get build-dep)"
check "apt-get build-dep $SRC" run "$LOGS/build-dep.log" "${APT[@]}" build-dep "$SRC"

begin "dpkg-buildpackage -us -uc -b"
if (cd "$SRC" && run "$LOGS/dpkg-buildpackage.log" env DEB_BUILD_OPTIONS=parallel=2 dpkg-buildpackage -us -uc -b); then
    pass "dpkg-buildpackage"
else
    fail "dpkg-buildpackage"
    finish
fi
arch=$(dpkg --print-architecture)
deb=$WORK/mtpolicyd_${deb_version}_${arch}.deb
changes=$WORK/mtpolicyd_${deb_version}_${arch}.changes
check "built $(basename "$deb")" test -f "$deb"
say "  contents:"
dpkg-deb -c "$deb" | awk '{print "    " $1, $2, $6, $7, $8}' | grep -v '/$' || true
for f in ./usr/bin/mtpolicyd ./usr/bin/policyd-client ./etc/mtpolicyd/mtpolicyd.conf \
         ./etc/init.d/mtpolicyd ./etc/default/mtpolicyd ./etc/cron.d/mtpolicyd \
         ./lib/systemd/system/mtpolicyd.service ./lib/systemd/system/mtpolicyd-cron.service \
         ./lib/systemd/system/mtpolicyd-cron.timer ./usr/share/mtpolicyd/sqlite.sql \
         ./usr/share/mtpolicyd/mysql.sql ./usr/share/man/man8/mtpolicyd.8.gz \
         ./usr/share/man/man5/mtpolicyd.conf.5.gz ./var/lib/mtpolicyd/; do
    check "the package has $f" sh -c "dpkg-deb -c '$deb' | awk '{print \$6}' | grep -qx '$f'"
done
check "the conffiles are the configuration, the init script, its defaults and the cron table" \
    sh -c "dpkg-deb -I '$deb' conffiles | sort | tr '\n' ' ' | grep -qx '/etc/cron.d/mtpolicyd /etc/default/mtpolicyd /etc/init.d/mtpolicyd /etc/mtpolicyd/mtpolicyd.conf '"

begin "lintian"
if command -v lintian >/dev/null 2>&1; then
    lintian --tag-display-limit 0 "$changes" >"$LOGS/lintian.log" 2>&1
    grep -E '^[EWIPNX]: ' "$LOGS/lintian.log" | sed 's/^/    /'
    errors=$(grep -c '^E:' "$LOGS/lintian.log")
    warnings=$(grep -c '^W:' "$LOGS/lintian.log")
    say "  lintian: $errors errors, $warnings warnings"
    check "no lintian errors" test "$errors" -eq 0
else
    say "  lintian is not installed (apt-get install lintian): skipped"
fi

# --- 3. install --------------------------------------------------------------------------------
begin "apt-get install $(basename "$deb") (services kept from starting by policy-rc.d)"
printf '#!/bin/sh\n# tests/package/run.sh: no service starts\nexit 101\n' >"$policy"
chmod 755 "$policy"
check "apt-get install" run "$LOGS/install.log" "${APT[@]}" -o Dpkg::Options::=--force-confnew install "$deb"
grep -E 'mtpolicyd|Setting up|Unpacking|Replacing|removed' "$LOGS/install.log" | sed 's/^/    /' | head -20
check "mtpolicyd $deb_version is installed" \
    test "$(dpkg-query -W -f='${Status} ${Version}' mtpolicyd)" = "install ok installed $deb_version"
check "/usr/bin/mtpolicyd is our ELF binary" sh -c "head -c 4 /usr/bin/mtpolicyd | grep -q ELF"
say "    $(/usr/bin/mtpolicyd -V 2>&1)"
check "no daemon was started by the maintainer scripts" test -z "$(our_procs)"
check "system user mtpolicyd" sh -c "getent passwd mtpolicyd >/dev/null"
check "system group mtpolicyd" sh -c "getent group mtpolicyd >/dev/null"
say "    $(getent passwd mtpolicyd)"
check "/etc/mtpolicyd/mtpolicyd.conf is root:mtpolicyd 0640" \
    test "$(stat -c '%U:%G %a' /etc/mtpolicyd/mtpolicyd.conf)" = "root:mtpolicyd 640"
check "the packaged configuration sets user, group and pid_file" \
    sh -c "grep -q '^user = \"mtpolicyd\";' /etc/mtpolicyd/mtpolicyd.conf &&
           grep -q '^group = \"mtpolicyd\";' /etc/mtpolicyd/mtpolicyd.conf &&
           grep -q '^pid_file = \"/run/mtpolicyd/mtpolicyd.pid\";' /etc/mtpolicyd/mtpolicyd.conf"
check "the packaged configuration is valid (mtpolicyd -t)" run "$LOGS/config-test.log" /usr/bin/mtpolicyd -t
check "/var/lib/mtpolicyd is mtpolicyd:mtpolicyd 0750" \
    test "$(stat -c '%U:%G %a' /var/lib/mtpolicyd)" = "mtpolicyd:mtpolicyd 750"
check "the SQLite database was created from sqlite.sql, owned by mtpolicyd" \
    sh -c "test \"\$(stat -c %U /var/lib/mtpolicyd/mtpolicyd.sqlite)\" = mtpolicyd &&
           sqlite3 /var/lib/mtpolicyd/mtpolicyd.sqlite .tables | grep -q relay_policies"
check "the unit runs /usr/bin/mtpolicyd -f -c /etc/mtpolicyd/mtpolicyd.conf" \
    grep -qx 'ExecStart=/usr/bin/mtpolicyd -f -c /etc/mtpolicyd/mtpolicyd.conf' /lib/systemd/system/mtpolicyd.service
if command -v systemd-analyze >/dev/null 2>&1; then
    check "systemd-analyze verify mtpolicyd.service, mtpolicyd-cron.service and .timer" \
        run "$LOGS/systemd-analyze.log" systemd-analyze verify /lib/systemd/system/mtpolicyd.service \
        /lib/systemd/system/mtpolicyd-cron.service /lib/systemd/system/mtpolicyd-cron.timer
    sed 's/^/    /' "$LOGS/systemd-analyze.log"
fi
check "the init script is enabled (update-rc.d)" sh -c "ls /etc/rc2.d/S*mtpolicyd >/dev/null 2>&1"

# The packaged configuration listens on 127.0.0.1:12345 and :12346. When something else has
# them, the installed configuration is moved to free ports (it is purged at the end).
port1=12345
port2=12346
port_busy() { ss -Hltn "sport = :$1" | grep -q .; }
if port_busy $port1 || port_busy $port2; then
    p=22345
    while port_busy $p || port_busy $((p + 1)); do p=$((p + 2)); done
    say "  ports 12345/12346 are in use here: the installed configuration is moved to $p/$((p + 1))"
    sed -i "s/12345/$p/g; s/12346/$((p + 1))/g" /etc/mtpolicyd/mtpolicyd.conf
    port1=$p
    port2=$((p + 1))
fi

# --- 4. the init script ----------------------------------------------------------------------
PIDFILE=/run/mtpolicyd/mtpolicyd.pid
master_pid() { cat "$PIDFILE" 2>/dev/null; }
workers_of() { pgrep -P "$1" 2>/dev/null | sort | tr '\n' ' '; }
query() { # PORT REQUEST-LINES...: prints the action
    local port=$1
    shift
    printf '%s\n' "$@" "" | /usr/bin/policyd-client -H "127.0.0.1:$port" 2>&1
}

begin "/etc/init.d/mtpolicyd start"
run "$LOGS/start.log" /etc/init.d/mtpolicyd start
rc=$?
sed 's/^/    /' "$LOGS/start.log"
check "start exits 0" test "$rc" -eq 0
check "pid file $PIDFILE" test -s "$PIDFILE"
pid=$(master_pid)
check "/run/mtpolicyd belongs to mtpolicyd" test "$(stat -c %U /run/mtpolicyd 2>/dev/null)" = mtpolicyd
check "master $pid runs" kill -0 "${pid:-0}"
check "master runs as user mtpolicyd" test "$(ps -o user= -p "${pid:-0}" 2>/dev/null)" = mtpolicyd
check "master is /usr/bin/mtpolicyd" test "$(readlink "/proc/${pid:-0}/exe")" = /usr/bin/mtpolicyd
sleep 1
workers=$(workers_of "${pid:-0}")
say "    master $pid, workers: $workers"
check "workers started" test -n "$workers"
wrong=""
for w in $workers; do
    [ "$(ps -o user= -p "$w" 2>/dev/null)" = mtpolicyd ] || wrong="$wrong $w"
done
check "every worker runs as user mtpolicyd" test -z "$wrong"

begin "query it with policyd-client"
answer=$(query $port1 client_address=192.0.2.1)
say "    127.0.0.1:$port1 client_address=192.0.2.1 -> $answer"
check "the reputation chain answers with an action" contains "$answer" 'X-MtScore' 
answer=$(query $port1 client_address=192.0.2.1 client_name=unknown 'helo_name=[192.0.2.1]')
say "    127.0.0.1:$port1 (no rDNS, HELO literal) -> $answer"
check "score 5 from two conditions" contains "$answer" 'score=5' 
answer=$(query $port2 request=smtpd_access_policy protocol_state=END-OF-MESSAGE \
    client_address=192.0.2.7 instance=pkgtest.1 recipient_count=2 size=1234)
say "    127.0.0.1:$port2 (accounting on SQLite) -> $answer"
check "the accounting chain answers (SQLite database writable by mtpolicyd)" contains "$answer" '[Dd][Uu][Nn][Nn][Oo]' 
check "the message was counted in /var/lib/mtpolicyd/mtpolicyd.sqlite" \
    sh -c "sqlite3 /var/lib/mtpolicyd/mtpolicyd.sqlite \"SELECT count FROM acct_client_address WHERE key='192.0.2.7'\" | grep -qx 1"

begin "/etc/init.d/mtpolicyd start (again)"
out=$(/etc/init.d/mtpolicyd start 2>&1)
rc=$?
say "    $out"
check "exits 0" test "$rc" -eq 0
check "says it is already running" contains "$out" 'already running' 
check "same master" test "$(master_pid)" = "$pid"

begin "/etc/init.d/mtpolicyd reload"
run "$LOGS/reload.log" /etc/init.d/mtpolicyd reload
rc=$?
sed 's/^/    /' "$LOGS/reload.log"
check "reload exits 0" test "$rc" -eq 0
new=""
for _ in $(seq 1 50); do
    new=$(workers_of "${pid:-0}")
    replaced=yes
    for w in $workers; do
        case " $new " in *" $w "*) replaced=no ;; esac
    done
    [ "$replaced" = yes ] && [ -n "$new" ] && break
    sleep 0.2
done
say "    master $(master_pid), workers: $new"
check "same master after reload" test "$(master_pid)" = "$pid"
check "the workers were replaced" test "$replaced" = yes -a -n "$new"
answer=$(query $port1 client_address=192.0.2.1)
check "answers after reload ($answer)" contains "$answer" 'X-MtScore' 
cp -p /etc/mtpolicyd/mtpolicyd.conf "$WORK/good.conf"
echo 'no_such_key = 1;' >>/etc/mtpolicyd/mtpolicyd.conf
/etc/init.d/mtpolicyd reload >"$LOGS/reload-broken.log" 2>&1
rc=$?
cp -p "$WORK/good.conf" /etc/mtpolicyd/mtpolicyd.conf
sed 's/^/    /' "$LOGS/reload-broken.log"
check "reload of a broken configuration fails" test "$rc" -ne 0
check "and the daemon goes on" kill -0 "${pid:-0}"

begin "/etc/init.d/mtpolicyd status"
out=$(/etc/init.d/mtpolicyd status 2>&1)
rc=$?
say "    $out"
check "status exits 0" test "$rc" -eq 0
check "status says running" contains "$out" 'is running' 

begin "the cron command, as user mtpolicyd"
cron_cmd=$(sed -nE 's/^0 +0 +\* +\* +\* +mtpolicyd +//p' /etc/cron.d/mtpolicyd | sed 's/\\%/%/g')
say "    $cron_cmd"
check "hourly task" runuser -u mtpolicyd -- /usr/bin/mtpolicyd --cron hourly
check "the midnight line of /etc/cron.d/mtpolicyd" runuser -u mtpolicyd -- /bin/sh -c "$cron_cmd"
check "the timer runs the cron service hourly" grep -qx 'OnCalendar=\*-\*-\* \*:00:00' /lib/systemd/system/mtpolicyd-cron.timer
check "the cron service runs mtpolicyd --cron as mtpolicyd" \
    sh -c "grep -qx 'User=mtpolicyd' /lib/systemd/system/mtpolicyd-cron.service &&
           grep -q '/usr/bin/mtpolicyd -c .* --cron' /lib/systemd/system/mtpolicyd-cron.service"
check "the cron table steps aside where systemd runs" \
    sh -c "test \$(grep -c 'if \[ ! -d /run/systemd/system \]' /etc/cron.d/mtpolicyd) = 2"

begin "/etc/init.d/mtpolicyd restart"
run "$LOGS/restart.log" /etc/init.d/mtpolicyd restart
rc=$?
sed 's/^/    /' "$LOGS/restart.log"
check "restart exits 0" test "$rc" -eq 0
pid2=$(master_pid)
check "a new master ($pid -> $pid2)" sh -c "test -n '$pid2' && test '$pid2' != '$pid' && ! kill -0 $pid 2>/dev/null"
answer=$(query $port1 client_address=192.0.2.1)
check "answers after restart ($answer)" contains "$answer" 'X-MtScore' 
workers=$(workers_of "${pid2:-0}")

begin "/etc/init.d/mtpolicyd stop"
run "$LOGS/stop.log" /etc/init.d/mtpolicyd stop
rc=$?
sed 's/^/    /' "$LOGS/stop.log"
check "stop exits 0" test "$rc" -eq 0
check "master $pid2 is gone" sh -c "! kill -0 ${pid2:-0} 2>/dev/null"
left=""
for w in $workers; do kill -0 "$w" 2>/dev/null && left="$left $w"; done
check "its workers are gone" test -z "$left"
check "the pid file is gone" test ! -e "$PIDFILE"
out=$(/etc/init.d/mtpolicyd status 2>&1)
rc=$?
say "    status: $out (exit $rc)"
check "status exits 3 (not running)" test "$rc" -eq 3
out=$(/etc/init.d/mtpolicyd stop 2>&1)
check "stop when stopped exits 0" test $? -eq 0

begin "start again, then apt-get purge mtpolicyd"
/etc/init.d/mtpolicyd start >"$LOGS/start2.log" 2>&1
pid3=$(master_pid)
workers=$(workers_of "${pid3:-0}")
check "started ($pid3)" kill -0 "${pid3:-0}"
rm -f "$policy"   # the package's prerm stops the daemon through invoke-rc.d
[ -n "$saved_policy" ] && cp -p "$saved_policy" "$policy"
check "apt-get purge" run "$LOGS/purge.log" "${APT[@]}" purge mtpolicyd
grep -E 'mtpolicyd|Removing|Purging' "$LOGS/purge.log" | sed 's/^/    /' | head -10
check "the package is gone" sh -c "! dpkg-query -W -f='\${Status}' mtpolicyd 2>/dev/null | grep -q installed"
left=""
for p in $pid3 $workers; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
check "nothing left running (master and workers stopped by prerm)" test -z "$left"
check "no process runs /usr/bin/mtpolicyd" test -z "$(our_procs)"
check "/etc/mtpolicyd, the init script, the cron table and the unit are gone" \
    sh -c "test ! -e /etc/mtpolicyd && test ! -e /etc/init.d/mtpolicyd && test ! -e /etc/cron.d/mtpolicyd &&
           test ! -e /etc/default/mtpolicyd && test ! -e /lib/systemd/system/mtpolicyd.service &&
           test ! -e /lib/systemd/system/mtpolicyd-cron.timer"
check "/var/lib/mtpolicyd and /run/mtpolicyd are gone (purge)" test ! -e /var/lib/mtpolicyd -a ! -e /run/mtpolicyd
check "user and group mtpolicyd are kept (policy: system users stay after purge)" \
    sh -c "getent passwd mtpolicyd >/dev/null && getent group mtpolicyd >/dev/null"

# --- 5. the Perl package back ------------------------------------------------------------------
if [ -n "$perl_version" ]; then
    begin "install the Perl mtpolicyd $perl_version again"
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    check "apt-get install mtpolicyd=$perl_version libdbd-mysql-perl" \
        run "$LOGS/perl.log" "${APT[@]}" install --no-install-recommends "mtpolicyd=$perl_version" libdbd-mysql-perl
    check "/usr/bin/mtpolicyd is Perl again" sh -c "head -n 1 /usr/bin/mtpolicyd | grep -q perl"
    if [ -f "$WORK/perl-mtpolicyd.conf" ] && ! cmp -s "$WORK/perl-mtpolicyd.conf" /etc/mtpolicyd/mtpolicyd.conf; then
        cp -p "$WORK/perl-mtpolicyd.conf" /etc/mtpolicyd/mtpolicyd.conf
        say "    put back the previous /etc/mtpolicyd/mtpolicyd.conf"
    fi
    check "/etc/mtpolicyd/mtpolicyd.conf is the previous one" \
        sh -c "! test -f '$WORK/perl-mtpolicyd.conf' || cmp -s '$WORK/perl-mtpolicyd.conf' /etc/mtpolicyd/mtpolicyd.conf"
fi

finish
