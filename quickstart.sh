#!/bin/sh
# quickstart.sh: build mtpolicyd on a Debian machine and run it, or run every test.
#
#   ./quickstart.sh         install missing build dependencies (apt-get, needs root), build in
#                           ./build, and run mtpolicyd in the foreground on conf/mtpolicyd.conf
#                           (listening on 127.0.0.1:12345; Ctrl-C stops it)
#   ./quickstart.sh test    same set-up, then run all tests; ends with "N passed, N failed"
set -eu

mode=${1:-run}
case "$mode" in
    run|test) ;;
    *) echo "usage: $0 [run|test]" >&2; exit 64 ;;
esac

top=$(cd "$(dirname "$0")" && pwd)
cd "$top"

# Build dependencies (Debian package names); sqlite3 creates the sample database. Tests also
# need a MariaDB server (started privately by the tests, never as a system service) and
# mandoc (man page lint).
deps="g++ make autoconf automake pkgconf libevent-dev libconfig++-dev libcjson-dev libmariadb-dev libsqlite3-dev libpcre2-dev libcppunit-dev sqlite3"
# clang and its runtime for the libFuzzer targets (tests/fuzz).
[ "$mode" = test ] && deps="$deps mandoc procps mariadb-server postfix swaks perl clang libclang-rt-14-dev"

missing=""
for p in $deps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "quickstart: installing:$missing"
    if [ "$(id -u)" -ne 0 ]; then
        echo "quickstart: missing packages and not root; run as root or: apt-get install$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Server packages must not start system services: the tests start their own.
    policy=/usr/sbin/policy-rc.d
    made_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=yes
        trap 'rm -f "$policy"' EXIT
    fi
    # Postfix for the end-to-end test: no system configuration (the test runs its own).
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
    if [ "$made_policy" = yes ]; then
        rm -f "$policy"
        trap - EXIT
    fi
fi

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
    autoreconf -fi
fi
mkdir -p build
cd build
if [ ! -f Makefile ] || [ ../configure -nt config.status ]; then
    ../configure --quiet
fi
jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs" --no-print-directory

if [ "$mode" = run ]; then
    # The sample configuration keeps its accounting counters in SQLite.
    db=/var/lib/mtpolicyd/mtpolicyd.sqlite
    if [ ! -s "$db" ]; then
        mkdir -p "$(dirname "$db")"
        sqlite3 "$db" < "$top/sql/sqlite.sql"
        echo "quickstart: created $db from sql/sqlite.sql"
    fi
    echo "quickstart: starting mtpolicyd on 127.0.0.1:12345 and :12346 (Ctrl-C to stop)"
    exec ./mtpolicyd -f -c "$top/conf/mtpolicyd.conf"
fi
exec sh "$top/tests/run-tests.sh" "$top/build"
