// Integration tests of the MySQL driver against a real MariaDB server (MariaDbFixture: private
// datadir, unix socket only, a password-protected user). They cover what a fake cannot: the
// server's types as text, affected-row semantics (CLIENT_FOUND_ROWS), error numbers, wrong
// credentials, and the outage behaviour: a stopped, killed or crashed server is logged once,
// calls fail fast while it is away, and the same SqlConnection object recovers by itself when it
// is back, without sending a failed statement twice.
#include <cppunit/extensions/HelperMacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../../src/sql/Drivers.h"  // makeMysqlConnection with a short idle-ping interval
#include "DaemonFixture.h"
#include "MariaDbFixture.h"
#include "mtpolicyd/sql/SqlConnection.h"
#include "mtpolicyd/util/Log.h"

using itest::Clock;
using itest::countOf;
using itest::elapsedMs;
using mtp::DbError;
using mtp::DbNoSuchTable;
using mtp::SqlConnection;
using mtp::SqlParam;
using mtp::SqlResult;
using mtp::SqlSettings;

namespace {

using itest::sleepMs;

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

const std::string& cell(const SqlResult& r, size_t row, size_t col) {
    CPPUNIT_ASSERT(row < r.rows.size());
    CPPUNIT_ASSERT(col < r.rows[row].size());
    CPPUNIT_ASSERT_MESSAGE("unexpected NULL", r.rows[row][col].has_value());
    return *r.rows[row][col];
}

SqlParam text(const std::string& s) { return SqlParam::of(s); }

// The message of the DbError that `fn` throws; fails the test when it throws nothing.
template <typename Fn>
std::string dbErrorOf(Fn fn) {
    try {
        fn();
    } catch (const DbError& e) {
        return e.what();
    }
    CPPUNIT_FAIL("expected DbError");
    return "";
}

}  // namespace

class TestMysql : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestMysql);
    CPPUNIT_TEST(testConnectTypesAndNulls);
    CPPUNIT_TEST(testAffectedRows);
    CPPUNIT_TEST(testStatementReuseAndErrors);
    CPPUNIT_TEST(testNoSuchTable);
    CPPUNIT_TEST(testSyntaxError);
    CPPUNIT_TEST(testWrongPassword);
    CPPUNIT_TEST(testUnreachableFailsFast);
    CPPUNIT_TEST(testKilledSession);
    CPPUNIT_TEST(testIdlePingReconnectsQuietly);
    CPPUNIT_TEST(testForkedChildUsesOwnSession);
    CPPUNIT_TEST(testReadTimeoutBounded);
    CPPUNIT_TEST(testOutageAndRecovery);
    CPPUNIT_TEST(testServerCrashAndRecovery);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override {
        db_ = &itest::sharedMariaDb();  // throws (test fails) when MariaDB is not installed
        db_->start();                   // a previous test may have left it stopped
        static int n = 0;
        logPath_ = db_->dir() + "/test-" + std::to_string(++n) + ".log";
        mtp::log::toFile(logPath_, "test");
        savedLevel_ = mtp::log::g_level;
        db_->rootExec("DROP TABLE IF EXISTS t, u");
    }

    void tearDown() override {
        mtp::log::setLevel(savedLevel_);
        mtp::log::toStderr("integration-tests");
    }

    std::string log() const { return itest::readFile(logPath_); }

    std::unique_ptr<SqlConnection> connect() { return mtp::makeSqlConnection(db_->settings()); }

    std::string counter() { return db_->rootQuery("SELECT n FROM t").at(0).at(0); }

    void testConnectTypesAndNulls() {
        auto c = connect();
        CPPUNIT_ASSERT(c->driver() == mtp::Dsn::Driver::Mysql);
        SqlResult r = c->execute("SELECT CURRENT_USER(), @@autocommit, @@character_set_client", {});
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd@localhost"), cell(r, 0, 0));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(r, 0, 1));
        CPPUNIT_ASSERT_EQUAL(std::string("utf8mb4"), cell(r, 0, 2));

        c->executeDirect(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR(255) NULL, note MEDIUMTEXT NULL, "
            "n BIGINT NULL, f DOUBLE NULL, d DECIMAL(10,2) NULL, ts DATETIME NULL) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
        const std::string ins = "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)";
        std::string big(100000, 'x');
        big[99999] = 'y';
        std::string emoji = "gr\xc3\xbc\xc3\x9f \xf0\x9f\x93\xa7 it's \"quoted\"";
        r = c->execute(ins, {SqlParam::of(1LL), text("alice"), text(big),
                             SqlParam::of(-9223372036854775807LL - 1), text("2.5"), text("12.5"),
                             text("2024-01-02 03:04:05")});
        CPPUNIT_ASSERT_EQUAL(uint64_t(1), r.affected);
        c->execute(ins, {SqlParam::of(2LL), SqlParam::null(), SqlParam::null(), SqlParam::null(),
                         SqlParam::null(), SqlParam::null(), SqlParam::null()});
        c->execute(ins,
                   {SqlParam::of(3LL), text(emoji), text(""), SqlParam::of(9223372036854775807LL),
                    SqlParam::of(7LL), SqlParam::of(-3LL), SqlParam::null()});

        r = c->execute("SELECT id, name, note, n, f, d, ts FROM t ORDER BY id", {});
        CPPUNIT_ASSERT_EQUAL(size_t(3), r.rows.size());
        CPPUNIT_ASSERT_EQUAL(uint64_t(0), r.affected);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(r, 0, 0));
        CPPUNIT_ASSERT_EQUAL(std::string("alice"), cell(r, 0, 1));
        CPPUNIT_ASSERT(cell(r, 0, 2) == big);
        CPPUNIT_ASSERT_EQUAL(std::string("-9223372036854775808"), cell(r, 0, 3));
        CPPUNIT_ASSERT_EQUAL(std::string("2.5"), cell(r, 0, 4));
        CPPUNIT_ASSERT_EQUAL(std::string("12.50"), cell(r, 0, 5));
        CPPUNIT_ASSERT_EQUAL(std::string("2024-01-02 03:04:05"), cell(r, 0, 6));
        for (size_t col = 1; col < 7; ++col) CPPUNIT_ASSERT(!r.rows[1][col].has_value());
        CPPUNIT_ASSERT_EQUAL(emoji, cell(r, 2, 1));
        CPPUNIT_ASSERT_EQUAL(std::string(""), cell(r, 2, 2));  // empty, not NULL
        CPPUNIT_ASSERT_EQUAL(std::string("9223372036854775807"), cell(r, 2, 3));
        CPPUNIT_ASSERT_EQUAL(std::string("7"), cell(r, 2, 4));
        CPPUNIT_ASSERT_EQUAL(std::string("-3.00"), cell(r, 2, 5));

        // Parameters in expressions, a computed long value, a NULL parameter.
        r = c->execute(
            "SELECT CONCAT(?, '-', ?), REPEAT('z', ?), ? IS NULL, ?",
            {text("a"), SqlParam::of(5LL), SqlParam::of(70000LL), SqlParam::null(), text("b")});
        CPPUNIT_ASSERT_EQUAL(std::string("a-5"), cell(r, 0, 0));
        CPPUNIT_ASSERT_EQUAL(std::string(70000, 'z'), cell(r, 0, 1));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(r, 0, 2));
        CPPUNIT_ASSERT_EQUAL(std::string("b"), cell(r, 0, 3));
        // A lookup that matches nothing.
        r = c->execute("SELECT name FROM t WHERE id = ?", {SqlParam::of(99LL)});
        CPPUNIT_ASSERT(r.rows.empty());
        // An injection attempt stays a value.
        r = c->execute("SELECT COUNT(*) FROM t WHERE name = ?", {text("x' OR '1'='1")});
        CPPUNIT_ASSERT_EQUAL(std::string("0"), cell(r, 0, 0));
    }

    void testAffectedRows() {
        auto c = connect();
        c->executeDirect("CREATE TABLE t (k VARCHAR(20) PRIMARY KEY, n INT NOT NULL)");
        for (const char* k : {"a", "b", "c"})
            CPPUNIT_ASSERT_EQUAL(uint64_t(1),
                                 c->execute("INSERT INTO t VALUES (?, 0)", {text(k)}).affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(3), c->execute("UPDATE t SET n = n + 1", {}).affected);
        // CLIENT_FOUND_ROWS (DBD::mysql's default): matched rows count, changed or not.
        CPPUNIT_ASSERT_EQUAL(uint64_t(3), c->execute("UPDATE t SET n = 1", {}).affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(0),
                             c->execute("UPDATE t SET n = 2 WHERE k = ?", {text("zz")}).affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(1),
                             c->execute("DELETE FROM t WHERE k = ?", {text("c")}).affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(0), c->execute("SELECT * FROM t", {}).affected);
        // The accounting upsert: 1 for an insert, 2 for an update.
        const std::string upsert = "INSERT INTO t VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1";
        CPPUNIT_ASSERT_EQUAL(uint64_t(1), c->execute(upsert, {text("d")}).affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(2), c->execute(upsert, {text("d")}).affected);
        CPPUNIT_ASSERT_EQUAL(std::string("2"),
                             cell(c->execute("SELECT n FROM t WHERE k = 'd'", {}), 0, 0));
    }

    void testStatementReuseAndErrors() {
        auto c = connect();
        c->executeDirect("CREATE TABLE t (k VARCHAR(20) PRIMARY KEY, n INT NOT NULL)");
        const std::string ins = "INSERT INTO t VALUES (?, ?)";
        for (long long i = 0; i < 200; ++i)
            c->execute(ins, {text("k" + std::to_string(i)), SqlParam::of(i)});
        const std::string sel = "SELECT n FROM t WHERE k = ?";
        CPPUNIT_ASSERT_EQUAL(std::string("17"), cell(c->execute(sel, {text("k17")}), 0, 0));
        CPPUNIT_ASSERT_EQUAL(std::string("199"), cell(c->execute(sel, {text("k199")}), 0, 0));
        // The statements are prepared once each, not once per call.
        SqlResult prepared = c->execute("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'", {});
        CPPUNIT_ASSERT(std::stol(cell(prepared, 0, 1)) < 10);

        // A duplicate key is an ordinary DbError; the same SQL works again afterwards.
        std::string e = dbErrorOf([&] { c->execute(ins, {text("k1"), SqlParam::of(0LL)}); });
        CPPUNIT_ASSERT(contains(e, "Duplicate entry"));
        CPPUNIT_ASSERT_EQUAL(uint64_t(1),
                             c->execute(ins, {text("new"), SqlParam::of(1LL)}).affected);
        // Wrong number of parameters.
        e = dbErrorOf([&] { c->execute(sel, {}); });
        CPPUNIT_ASSERT(contains(e, "expects 1 parameters, got 0"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(c->execute(sel, {text("new")}), 0, 0));
        CPPUNIT_ASSERT(!contains(log(), "connection lost"));
    }

    void testNoSuchTable() {
        auto c = connect();
        CPPUNIT_ASSERT(!c->tableExists("u"));
        const std::string sel = "SELECT n FROM u WHERE k = ?";
        try {
            c->execute(sel, {text("x")});
            CPPUNIT_FAIL("expected DbNoSuchTable");
        } catch (const DbNoSuchTable& e) {
            CPPUNIT_ASSERT(contains(e.what(), "database 'db'"));
            CPPUNIT_ASSERT(contains(e.what(), "mtpolicyd.u"));
            CPPUNIT_ASSERT(!contains(e.what(), itest::MariaDb::kPassword));
        }
        CPPUNIT_ASSERT_THROW(c->executeDirect("DELETE FROM u"), DbNoSuchTable);

        c->executeDirect("CREATE TABLE u (k VARCHAR(20), n INT)");
        CPPUNIT_ASSERT(c->tableExists("u"));
        CPPUNIT_ASSERT(!c->tableExists("u2"));
        CPPUNIT_ASSERT(c->execute(sel, {text("x")}).rows.empty());
        // Dropped under a cached statement: still reported as a missing table.
        db_->rootExec("DROP TABLE u");
        CPPUNIT_ASSERT_THROW(c->execute(sel, {text("x")}), DbNoSuchTable);
        CPPUNIT_ASSERT(!c->tableExists("u"));
        db_->rootExec("CREATE TABLE u (k VARCHAR(20), n INT)");
        db_->rootExec("INSERT INTO u VALUES ('x', 4)");
        CPPUNIT_ASSERT_EQUAL(std::string("4"), cell(c->execute(sel, {text("x")}), 0, 0));
        CPPUNIT_ASSERT(!contains(log(), "connection lost"));
    }

    void testSyntaxError() {
        auto c = connect();
        try {
            c->execute("SELEKT 1", {});
            CPPUNIT_FAIL("expected DbError");
        } catch (const DbNoSuchTable&) {
            CPPUNIT_FAIL("a syntax error is not a missing table");
        } catch (const DbError& e) {
            CPPUNIT_ASSERT(contains(e.what(), "database 'db'"));
            CPPUNIT_ASSERT(contains(e.what(), "SQL syntax"));
            CPPUNIT_ASSERT(contains(e.what(), "SELEKT 1"));
        }
        CPPUNIT_ASSERT_THROW(c->executeDirect("CREATE TABLE (x INT)"), DbError);
        // Multiple statements are not allowed in one call.
        CPPUNIT_ASSERT_THROW(c->executeDirect("SELECT 1; SELECT 2"), DbError);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(c->execute("SELECT 1", {}), 0, 0));
        CPPUNIT_ASSERT(!contains(log(), "connection lost"));
    }

    void testWrongPassword() {
        SqlSettings s = db_->settings();
        s.password = "Wr0ng-Secret-Value";
        auto c = mtp::makeSqlConnection(s);
        std::string e = dbErrorOf([&] { c->execute("SELECT 1", {}); });
        CPPUNIT_ASSERT_MESSAGE(e, contains(e, "database 'db': cannot connect"));
        CPPUNIT_ASSERT_MESSAGE(e, contains(e, "Access denied"));
        CPPUNIT_ASSERT_MESSAGE(e, !contains(e, s.password));
        CPPUNIT_ASSERT_MESSAGE(e, !contains(e, itest::MariaDb::kPassword));
        // Within the second: no new attempt, one log line in all.
        e = dbErrorOf([&] { c->execute("SELECT 1", {}); });
        CPPUNIT_ASSERT_EQUAL(std::string("database 'db' is unavailable"), e);
        std::string l = log();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1), countOf(l, "database 'db': cannot connect"));
        CPPUNIT_ASSERT(contains(l, "Access denied"));
        CPPUNIT_ASSERT(!contains(l, s.password));
    }

    // No server at all: the first call fails, then calls fail without touching the network
    // until a second has passed.
    void testUnreachableFailsFast() {
        SqlSettings s = db_->settings();
        s.dsn = mtp::Dsn::parse("dbi:mysql:database=mtpolicyd;mysql_socket=" + db_->dir() +
                                "/nothing.sock");
        auto c = mtp::makeSqlConnection(s);
        std::string e = dbErrorOf([&] { c->execute("SELECT 1", {}); });
        CPPUNIT_ASSERT_MESSAGE(e, contains(e, "database 'db': cannot connect"));
        long slowest = 0;
        for (int i = 0; i < 20; ++i) {
            auto t0 = Clock::now();
            e = dbErrorOf([&] { c->execute("SELECT 1", {}); });
            slowest = std::max(slowest, elapsedMs(t0));
            CPPUNIT_ASSERT_EQUAL(std::string("database 'db' is unavailable"), e);
        }
        CPPUNIT_ASSERT(slowest < 50);
        sleepMs(1100);
        e = dbErrorOf([&] { c->execute("SELECT 1", {}); });
        CPPUNIT_ASSERT_MESSAGE(e, contains(e, "cannot connect"));  // a new attempt
        std::string l = log();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1), countOf(l, "cannot connect"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(0), countOf(l, "re-established"));
    }

    // The server kills our session: the call that finds out fails and is not resent; the next
    // call reconnects at once.
    void testKilledSession() {
        auto c = connect();
        c->executeDirect("CREATE TABLE t (n INT NOT NULL)");
        c->executeDirect("INSERT INTO t VALUES (0)");
        const std::string bump = "UPDATE t SET n = n + 1";
        c->execute(bump, {});
        std::string id = cell(c->execute("SELECT CONNECTION_ID()", {}), 0, 0);
        db_->rootExec("KILL " + id);
        // The UPDATE on the dead session either could not be sent (then the driver reconnects
        // and runs it once on a new session) or may have reached the server (then it fails and
        // is not repeated). Either way the counter equals the number of successful calls.
        int succeeded = 1;
        try {
            c->execute(bump, {});
            ++succeeded;
        } catch (const mtp::DbError& e) {
            CPPUNIT_ASSERT_MESSAGE(e.what(), contains(e.what(), "database 'db': connection lost"));
        }
        CPPUNIT_ASSERT_EQUAL(uint64_t(1), c->execute(bump, {}).affected);
        ++succeeded;
        CPPUNIT_ASSERT(cell(c->execute("SELECT CONNECTION_ID()", {}), 0, 0) != id);
        CPPUNIT_ASSERT_EQUAL(std::to_string(succeeded), counter());
        std::string l = log();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1), countOf(l, "database 'db': connection lost"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1),
                                     countOf(l, "database 'db': connection re-established"));
    }

    // A handle idle for longer than the ping interval is checked first; when the server has
    // dropped it (wait_timeout, here KILL), the call gets a new session and succeeds.
    void testIdlePingReconnectsQuietly() {
        mtp::log::setLevel(mtp::log::Info);
        auto c =
            mtp::sqldetail::makeMysqlConnection(db_->settings(), std::chrono::milliseconds(200));
        std::string id = cell(c->execute("SELECT CONNECTION_ID()", {}), 0, 0);
        db_->rootExec("KILL " + id);
        sleepMs(300);
        std::string id2 = cell(c->execute("SELECT CONNECTION_ID()", {}), 0, 0);
        CPPUNIT_ASSERT(id2 != id);
        std::string l = log();
        CPPUNIT_ASSERT_MESSAGE(l, !contains(l, "connection lost"));
        CPPUNIT_ASSERT_MESSAGE(l, !contains(l, "re-established"));
        CPPUNIT_ASSERT_MESSAGE(l, contains(l, "idle connection is gone"));
        // A busy handle is not pinged: the statement goes straight out.
        CPPUNIT_ASSERT_EQUAL(id2, cell(c->execute("SELECT CONNECTION_ID()", {}), 0, 0));
    }

    // A connection object used in a child after fork opens its own session and leaves the
    // parent's (same socket, inherited) alone: no COM_QUIT, no interleaved packets.
    void testForkedChildUsesOwnSession() {
        auto c = connect();
        std::string id = cell(c->execute("SELECT CONNECTION_ID()", {}), 0, 0);
        pid_t pid = fork();
        CPPUNIT_ASSERT(pid >= 0);
        if (pid == 0) {
            int rc = 0;
            try {
                SqlResult r = c->execute("SELECT CONNECTION_ID()", {});
                if (!r.rows.at(0).at(0) || *r.rows[0][0] == id) rc = 2;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "child: %s\n", e.what());
                rc = 1;
            }
            _exit(rc);  // no destructors, no CppUnit in the child
        }
        int status = 0;
        CPPUNIT_ASSERT_EQUAL(pid, waitpid(pid, &status, 0));
        CPPUNIT_ASSERT_MESSAGE("child failed", WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CPPUNIT_ASSERT_EQUAL(id, cell(c->execute("SELECT CONNECTION_ID()", {}), 0, 0));
        CPPUNIT_ASSERT(!contains(log(), "connection lost"));
    }

    // read_timeout bounds a statement the server does not answer.
    void testReadTimeoutBounded() {
        SqlSettings s = db_->settings();
        s.readTimeout = 1;
        auto c = mtp::makeSqlConnection(s);
        c->execute("SELECT 1", {});
        auto t0 = Clock::now();
        std::string e = dbErrorOf([&] { c->execute("SELECT SLEEP(6)", {}); });
        long ms = elapsedMs(t0);
        CPPUNIT_ASSERT_MESSAGE(e + " after " + std::to_string(ms) + " ms", ms < 4000);
        CPPUNIT_ASSERT_MESSAGE(e, contains(e, "connection lost"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(c->execute("SELECT 1", {}), 0, 0));
    }

    // The whole outage: the server stops, calls fail (fast, logged once), the server comes
    // back, and the same object recovers within about a second without double counting.
    void testOutageAndRecovery() {
        auto c = connect();
        c->executeDirect("CREATE TABLE t (n INT NOT NULL)");
        c->executeDirect("INSERT INTO t VALUES (0)");
        const std::string bump = "UPDATE t SET n = n + 1";
        c->execute(bump, {});

        CPPUNIT_ASSERT(db_->stop());
        std::string e = dbErrorOf([&] { c->execute(bump, {}); });
        CPPUNIT_ASSERT_MESSAGE(e, contains(e, "database 'db'"));

        // Calls for 1.5 s while it is down: all fail; those that do not attempt a connect
        // return at once; at most one attempt per second.
        int attempts = 0, fast = 0;
        long slowestFast = 0;
        auto start = Clock::now();
        while (elapsedMs(start) < 1500) {
            auto t0 = Clock::now();
            e = dbErrorOf([&] { c->execute(bump, {}); });
            long ms = elapsedMs(t0);
            if (e == "database 'db' is unavailable") {
                ++fast;
                slowestFast = std::max(slowestFast, ms);
            } else {
                CPPUNIT_ASSERT_MESSAGE(e, contains(e, "cannot connect"));
                ++attempts;
            }
            sleepMs(10);
        }
        CPPUNIT_ASSERT(fast > 50);
        CPPUNIT_ASSERT_MESSAGE(std::to_string(attempts), attempts >= 1 && attempts <= 3);
        CPPUNIT_ASSERT_MESSAGE(std::to_string(slowestFast), slowestFast < 50);
        std::string l = log();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1), countOf(l, "database 'db': connection lost"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(0), countOf(l, "cannot connect"));

        db_->start();
        auto up = Clock::now();
        bool ok = itest::waitFor(
            [&] {
                try {
                    c->execute(bump, {});
                    return true;
                } catch (const DbError&) {
                    return false;
                }
            },
            5000, 20);
        long recoveryMs = elapsedMs(up);
        CPPUNIT_ASSERT_MESSAGE("no recovery after " + std::to_string(recoveryMs) + " ms", ok);
        CPPUNIT_ASSERT_MESSAGE(std::to_string(recoveryMs) + " ms", recoveryMs < 2000);
        std::fprintf(stderr,
                     "[TestMysql] outage: %d fast failures (slowest %ld ms), %d connect attempts "
                     "in 1.5 s; recovered %ld ms after the server was ready\n",
                     fast, slowestFast, attempts, recoveryMs);

        l = log();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1), countOf(l, "database 'db': connection lost"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1),
                                     countOf(l, "database 'db': connection re-established"));
        // One bump before the outage, one after; every failed call was lost, none repeated.
        CPPUNIT_ASSERT_EQUAL(std::string("2"), counter());
        CPPUNIT_ASSERT(!contains(l, itest::MariaDb::kPassword));
    }

    // SIGKILL of the server (a crash): the same, after InnoDB recovery.
    void testServerCrashAndRecovery() {
        auto c = connect();
        c->executeDirect("CREATE TABLE t (n INT NOT NULL)");
        c->executeDirect("INSERT INTO t VALUES (0)");
        const std::string bump = "UPDATE t SET n = n + 1";
        c->execute(bump, {});
        db_->kill();
        dbErrorOf([&] { c->execute(bump, {}); });
        db_->start();
        bool ok = itest::waitFor(
            [&] {
                try {
                    c->execute(bump, {});
                    return true;
                } catch (const DbError&) {
                    return false;
                }
            },
            5000, 20);
        CPPUNIT_ASSERT(ok);
        CPPUNIT_ASSERT_EQUAL(std::string("2"), counter());
        std::string l = log();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1), countOf(l, "connection lost"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(l, size_t(1), countOf(l, "re-established"));
    }

  private:
    itest::MariaDb* db_ = nullptr;
    std::string logPath_;
    int savedLevel_ = mtp::log::Notice;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestMysql);
