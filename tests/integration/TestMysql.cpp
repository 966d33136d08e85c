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
#include <cstdio>
#include <optional>
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
using mtp::SqlRow;
using mtp::SqlSettings;
using mtp::SqlStatement;

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

// Rows as text for failure messages: values quoted, NULL bare.
std::string show(const std::vector<SqlRow>& rows) {
    std::string out;
    for (const auto& row : rows) {
        out += "(";
        for (size_t i = 0; i < row.size(); ++i)
            out += (i ? ", " : "") + (row[i] ? "'" + *row[i] + "'" : std::string("NULL"));
        out += ") ";
    }
    return out;
}

}  // namespace

class TestMysql : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestMysql);
    CPPUNIT_TEST(testConnectTypesAndNulls);
    CPPUNIT_TEST(testAffectedRows);
    CPPUNIT_TEST(testStatementReuseAndErrors);
    CPPUNIT_TEST(testNoSuchTable);
    CPPUNIT_TEST(testSyntaxError);
    CPPUNIT_TEST(testTransactionTotalsAndValues);
    CPPUNIT_TEST(testTransactionRollback);
    CPPUNIT_TEST(testTransactionGuardedUpsert);
    CPPUNIT_TEST(testTransactionRoundTrips);
    CPPUNIT_TEST(testTransactionMisuse);
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

    // --- executeTransaction -----------------------------------------------------------------
    // Each test runs on a default connection (MariaDB: one compound statement, BEGIN NOT ATOMIC
    // ... END) and on one forced to the statement-by-statement path that MySQL servers get.

    struct Mode {
        std::string name;
        std::unique_ptr<SqlConnection> c;
    };
    std::vector<Mode> bothModes() {
        std::vector<Mode> modes;
        modes.push_back({"compound", connect()});
        modes.push_back({"one by one", mtp::sqldetail::makeMysqlConnection(
                                           db_->settings(), std::chrono::seconds(30), false)});
        return modes;
    }

    // The total of affected rows, and every value (quotes, backslashes, UTF-8, NULL, integers)
    // arrives intact: the parameters of all statements are bound in order, none pasted.
    void testTransactionTotalsAndValues() {
        const std::string quote = "O'Reilly's ''doubled''";
        const std::string backslash = "C:\\dir\\n\\0 \\' end\\";
        const std::string dquote = "say \"hi\" \"";
        const std::string utf8 = "gr\xc3\xbc\xc3\x9f \xf0\x9f\x93\xa7 \xe2\x82\xac";  // grüß 📧 €
        const std::string ins = "INSERT INTO tx_v (id, s, n) VALUES (?, ?, ?)";
        for (auto& m : bothModes()) {
            SqlConnection& c = *m.c;
            c.executeDirect("DROP TABLE IF EXISTS tx_v");
            c.executeDirect(
                "CREATE TABLE tx_v (id INT PRIMARY KEY, s VARCHAR(255) NULL, n BIGINT NULL) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
            std::vector<SqlStatement> tx = {
                {ins, {SqlParam::of(1LL), text(quote), SqlParam::of(10LL)}},  // 1
                {"INSERT INTO tx_v (id, s, n) VALUES (?, ?, ?), (?, ?, ?)",   // 2
                 {SqlParam::of(2LL), text(backslash), SqlParam::of(-5LL), SqlParam::of(3LL),
                  text(dquote), SqlParam::null()}},
                {ins, {SqlParam::of(4LL), text(utf8), SqlParam::of(9223372036854775807LL)}},  // 1
                {ins, {SqlParam::of(5LL), SqlParam::null(), SqlParam::of(0LL)}},              // 1
                // A ';' and a '?' inside a literal are neither a statement end nor a parameter.
                {"INSERT INTO tx_v (id, s, n) VALUES (6, 'semi;colon?', ?)", {SqlParam::of(7LL)}},
                {"UPDATE tx_v SET n = n + ? WHERE id IN (?, ?)",  // 2
                 {SqlParam::of(100LL), SqlParam::of(1LL), SqlParam::of(2LL)}},
            };
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, uint64_t(8), c.executeTransaction(tx));

            std::vector<SqlRow> expected = {
                {std::string("1"), quote, std::string("110")},
                {std::string("2"), backslash, std::string("95")},
                {std::string("3"), dquote, std::nullopt},
                {std::string("4"), utf8, std::string("9223372036854775807")},
                {std::string("5"), std::nullopt, std::string("0")},
                {std::string("6"), std::string("semi;colon?"), std::string("7")},
            };
            std::vector<SqlRow> rows = c.execute("SELECT id, s, n FROM tx_v ORDER BY id", {}).rows;
            CPPUNIT_ASSERT_MESSAGE(m.name + ": " + show(rows), rows == expected);
            // Committed: another session sees the rows.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("6"),
                                         db_->rootQuery("SELECT COUNT(*) FROM tx_v").at(0).at(0));

            // Matched rows count even when unchanged (CLIENT_FOUND_ROWS, inside the compound
            // statement too); a statement that matches nothing adds 0.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(
                m.name, uint64_t(1),
                c.executeTransaction({{"UPDATE tx_v SET n = n WHERE id = ?", {SqlParam::of(6LL)}},
                                      {"UPDATE tx_v SET n = 0 WHERE id = ?", {SqlParam::of(99LL)}},
                                      {"DELETE FROM tx_v WHERE id = ?", {SqlParam::of(99LL)}}}));
            rows = c.execute("SELECT id, s, n FROM tx_v ORDER BY id", {}).rows;
            CPPUNIT_ASSERT_MESSAGE(m.name + ": " + show(rows), rows == expected);
            c.executeDirect("DROP TABLE tx_v");
        }
        CPPUNIT_ASSERT(!contains(log(), "connection lost"));
    }

    // A failing statement undoes the ones before it (the compound statement's handler rolls
    // back and RESIGNALs, so the error number, and DbNoSuchTable, survive), and the connection
    // is fine afterwards: no transaction left open, autocommit back on.
    void testTransactionRollback() {
        const std::string ins = "INSERT INTO tx_r (k, n) VALUES (?, ?)";
        const std::string all = "SELECT k, n FROM tx_r ORDER BY k";
        for (auto& m : bothModes()) {
            SqlConnection& c = *m.c;
            c.executeDirect("DROP TABLE IF EXISTS tx_r, tx_missing");
            c.executeDirect("CREATE TABLE tx_r (k VARCHAR(20) PRIMARY KEY, n INT NOT NULL) "
                            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
            CPPUNIT_ASSERT_EQUAL(uint64_t(1), c.execute(ins, {text("a"), SqlParam::of(1LL)}).affected);
            const std::vector<SqlRow> before = {{std::string("a"), std::string("1")}};

            // The second statement refers to a missing table.
            try {
                c.executeTransaction({{ins, {text("b"), SqlParam::of(2LL)}},
                                      {"INSERT INTO tx_missing (n) VALUES (?)", {SqlParam::of(1LL)}}});
                CPPUNIT_FAIL(m.name + ": expected DbNoSuchTable");
            } catch (const DbNoSuchTable& e) {
                CPPUNIT_ASSERT_MESSAGE(m.name + ": " + e.what(), contains(e.what(), "database 'db'"));
                CPPUNIT_ASSERT_MESSAGE(m.name + ": " + e.what(), contains(e.what(), "tx_missing"));
            }
            std::vector<SqlRow> rows = c.execute(all, {}).rows;
            CPPUNIT_ASSERT_MESSAGE(m.name + ": " + show(rows), rows == before);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("1"),
                                         db_->rootQuery("SELECT COUNT(*) FROM tx_r").at(0).at(0));

            // The third statement hits a duplicate key: an ordinary DbError; the UPDATE and
            // INSERT before it are undone.
            try {
                c.executeTransaction({{"UPDATE tx_r SET n = n + ?", {SqlParam::of(10LL)}},
                                      {ins, {text("c"), SqlParam::of(3LL)}},
                                      {ins, {text("a"), SqlParam::of(9LL)}}});
                CPPUNIT_FAIL(m.name + ": expected DbError");
            } catch (const DbNoSuchTable& e) {
                CPPUNIT_FAIL(m.name + ": a duplicate key is not a missing table: " + e.what());
            } catch (const DbError& e) {
                CPPUNIT_ASSERT_MESSAGE(m.name + ": " + e.what(), contains(e.what(), "Duplicate entry"));
            }
            rows = c.execute(all, {}).rows;
            CPPUNIT_ASSERT_MESSAGE(m.name + ": " + show(rows), rows == before);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("1"),
                                         db_->rootQuery("SELECT COUNT(*) FROM tx_r").at(0).at(0));

            // The same connection: no transaction open, a plain execute() commits at once, and
            // another transaction works.
            SqlResult r = c.execute("SELECT @@in_transaction, @@autocommit", {});
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("0"), cell(r, 0, 0));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("1"), cell(r, 0, 1));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, uint64_t(1),
                                         c.execute(ins, {text("d"), SqlParam::of(4LL)}).affected);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("2"),
                                         db_->rootQuery("SELECT COUNT(*) FROM tx_r").at(0).at(0));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(
                m.name, uint64_t(2),
                c.executeTransaction({{ins, {text("e"), SqlParam::of(5LL)}},
                                      {ins, {text("f"), SqlParam::of(6LL)}}}));
            auto seen = db_->rootQuery("SELECT k, n FROM tx_r ORDER BY k");
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, size_t(4), seen.size());
            const char* keys[] = {"a", "d", "e", "f"};
            const char* values[] = {"1", "4", "5", "6"};
            for (size_t i = 0; i < 4; ++i) {
                CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string(keys[i]), seen[i].at(0));
                CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string(values[i]), seen[i].at(1));
            }
            c.executeDirect("DROP TABLE tx_r");
        }
        CPPUNIT_ASSERT(!contains(log(), "connection lost"));
    }

    // What a caller may get wrong: parameters that do not match a statement's placeholders
    // (the compound statement shares one list, so they must not slide into the next
    // statement), a SELECT inside (its result must be read off the wire, or the session is out
    // of step), and a trailing ';' or comment (each statement ends on a line of its own).
    void testTransactionMisuse() {
        const std::string ins = "INSERT INTO tx_m (n) VALUES (?)";
        for (auto& m : bothModes()) {
            SqlConnection& c = *m.c;
            c.executeDirect("DROP TABLE IF EXISTS tx_m");
            c.executeDirect("CREATE TABLE tx_m (n INT PRIMARY KEY) ENGINE=InnoDB");
            try {
                c.executeTransaction({{ins, {}}, {ins, {SqlParam::of(1LL), SqlParam::of(2LL)}}});
                CPPUNIT_FAIL(m.name + ": expected DbError for a parameter count mismatch");
            } catch (const DbError& e) {
                CPPUNIT_ASSERT_MESSAGE(m.name + ": " + e.what(), contains(e.what(), "expects 1 parameters, got 0"));
            }
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("0"),
                                         db_->rootQuery("SELECT COUNT(*) FROM tx_m").at(0).at(0));

            // A SELECT inside: the rows are committed, and the session stays usable.
            c.executeTransaction({{ins, {SqlParam::of(1LL)}}, {"SELECT n FROM tx_m", {}}});
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("1"), cell(c.execute("SELECT COUNT(*) FROM tx_m", {}), 0, 0));

            // A trailing ';' and trailing comments; a '?' inside a comment is no parameter.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(
                m.name, uint64_t(3),
                c.executeTransaction({{"INSERT INTO tx_m (n) VALUES (?); ", {SqlParam::of(2LL)}},
                                      {"INSERT INTO tx_m (n) VALUES (?) -- why? because", {SqlParam::of(3LL)}},
                                      {"INSERT INTO tx_m (n) VALUES (?) # what?", {SqlParam::of(4LL)}}}));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("4"),
                                         db_->rootQuery("SELECT COUNT(*) FROM tx_m").at(0).at(0));
            c.executeDirect("DROP TABLE tx_m");
        }
        CPPUNIT_ASSERT(!contains(log(), "connection lost"));
    }

    // Accounting's batch: the instance row goes in with INSERT IGNORE, its ROW_COUNT() is kept
    // in a session variable, and the counters change only when it is > 0. A repeated instance
    // changes nothing and the total is 0; a new one counts exactly once more.
    void testTransactionGuardedUpsert() {
        const std::string instance =
            "INSERT IGNORE INTO `tx_instances` (`plugin`, `instance`, `time`) VALUES (?, ?, ?)";
        const std::string upsert =
            "INSERT INTO `tx_acct` (`key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt`)"
            " SELECT ?, ?, 1, ?, ?, ? FROM DUAL WHERE @mtp_counted > 0"
            " ON DUPLICATE KEY UPDATE `count` = `count` + 1,"
            " `count_rcpt` = `count_rcpt` + VALUES(`count_rcpt`),"
            " `size` = `size` + VALUES(`size`), `size_rcpt` = `size_rcpt` + VALUES(`size_rcpt`)";
        auto batch = [&](const std::string& inst) {
            std::vector<SqlStatement> b;
            b.push_back({instance, {text("acct"), text(inst), SqlParam::of(1700000000LL)}});
            b.push_back({"SET @mtp_counted = ROW_COUNT()", {}});
            for (const char* key : {"192.0.2.1", "alice@example.org"})
                b.push_back({upsert, {text(key), text("2024-01"), SqlParam::of(3LL),
                                      SqlParam::of(1000LL), SqlParam::of(3000LL)}});
            return b;
        };
        for (auto& m : bothModes()) {
            SqlConnection& c = *m.c;
            c.executeDirect("DROP TABLE IF EXISTS tx_instances, tx_acct");
            c.executeDirect(
                "CREATE TABLE tx_instances (`plugin` VARCHAR(64) NOT NULL, `instance` "
                "VARCHAR(128) NOT NULL, `time` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`plugin`, "
                "`instance`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
            c.executeDirect(
                "CREATE TABLE tx_acct (`id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, `key` "
                "VARCHAR(255) NOT NULL, `time` VARCHAR(255) NOT NULL, `count` BIGINT UNSIGNED "
                "NOT NULL DEFAULT 0, `count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0, `size` "
                "BIGINT UNSIGNED NOT NULL DEFAULT 0, `size_rcpt` BIGINT UNSIGNED NOT NULL "
                "DEFAULT 0, PRIMARY KEY (`id`), UNIQUE KEY `time_key` (`key`, `time`)) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
            auto counters = [&] {
                std::string out;
                for (const auto& row : db_->rootQuery(
                         "SELECT `key`, `count`, `count_rcpt`, `size`, `size_rcpt` FROM tx_acct "
                         "ORDER BY `key`"))
                    for (const auto& v : row) out += v + " ";
                return out;
            };
            auto instances = [&] {
                return db_->rootQuery("SELECT COUNT(*) FROM tx_instances").at(0).at(0);
            };

            // A new instance (on a fresh connection: every statement is prepared on the way):
            // 1 instance row + 0 (SET) + 1 + 1 new counter rows.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, uint64_t(3), c.executeTransaction(batch("I1")));
            const std::string once =
                "192.0.2.1 1 3 1000 3000 alice@example.org 1 3 1000 3000 ";
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, once, counters());
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("1"), instances());

            // The same instance again: nothing changes, the total is 0.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, uint64_t(0), c.executeTransaction(batch("I1")));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, once, counters());
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("1"), instances());

            // Another instance: counted exactly once more (1 + 0 + 2 + 2, an upsert's update
            // counts 2).
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, uint64_t(5), c.executeTransaction(batch("I2")));
            const std::string twice =
                "192.0.2.1 2 6 2000 6000 alice@example.org 2 6 2000 6000 ";
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, twice, counters());
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, std::string("2"), instances());
            for (const char* again : {"I2", "I1"}) {
                CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, uint64_t(0), c.executeTransaction(batch(again)));
                CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, twice, counters());
            }
            c.executeDirect("DROP TABLE tx_instances, tx_acct");
        }
    }

    // One round trip on MariaDB. The session's Questions counter counts client commands
    // (COM_QUERY, COM_STMT_EXECUTE), not statements run inside a stored program; it is read
    // through the same connection, so each reading adds its own SHOW, measured here too.
    void testTransactionRoundTrips() {
        for (auto& m : bothModes()) {
            SqlConnection& c = *m.c;
            c.executeDirect("DROP TABLE IF EXISTS tx_q");
            c.executeDirect("CREATE TABLE tx_q (k VARCHAR(20) PRIMARY KEY, n INT NOT NULL)");
            auto questions = [&] {
                SqlResult r = c.execute("SHOW SESSION STATUS LIKE 'Questions'", {});
                CPPUNIT_ASSERT_EQUAL(std::string("Questions"), cell(r, 0, 0));
                return std::stoll(cell(r, 0, 1));
            };
            std::vector<SqlStatement> tx = {
                {"INSERT INTO tx_q (k, n) VALUES (?, ?)", {text("a"), SqlParam::of(1LL)}},
                {"UPDATE tx_q SET n = n + ? WHERE k = ?", {SqlParam::of(1LL), text("a")}},
                {"DELETE FROM tx_q WHERE k = ?", {text("a")}},
            };
            // First use: the statements get prepared (and the SHOW too).
            long long q0 = questions();
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, uint64_t(3), c.executeTransaction(tx));
            long long q1 = questions();
            long long q2 = questions();
            long long showCost = q2 - q1;  // what one reading adds by itself
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, uint64_t(3), c.executeTransaction(tx));
            long long q3 = questions();
            long long tx3 = q3 - q2 - showCost;
            std::fprintf(stderr,
                         "[TestMysql] Questions (%s): SHOW adds %lld; a transaction of 3 "
                         "statements adds %lld (%lld on first use, with the prepares)\n",
                         m.name.c_str(), showCost, tx3, q1 - q0 - showCost);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, 1LL, showCost);
            // Compound: 1 (COM_STMT_EXECUTE). One by one: START TRANSACTION, 3 executes, COMMIT.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(m.name, m.name == "compound" ? 1LL : 5LL, tx3);
            c.executeDirect("DROP TABLE tx_q");
        }
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
