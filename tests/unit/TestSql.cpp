// Unit tests for the SQL layer that need no server: Dsn::parse (every accepted form, every
// rejected one) and the SQLite driver, in memory and on a file in a private temp dir (WAL mode,
// two processes writing the same file at once, open failures logged once). The MySQL driver is
// tested against a real MariaDB in tests/integration/TestMysql.cpp.
#include <cppunit/extensions/HelperMacros.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mtpolicyd/sql/SqlConnection.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

using mtp::ConfigError;
using mtp::DbError;
using mtp::DbNoSuchTable;
using mtp::Dsn;
using mtp::SqlConnection;
using mtp::SqlParam;
using mtp::SqlResult;
using mtp::SqlRow;
using mtp::SqlSettings;
using mtp::SqlStatement;

namespace {

// A private directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
  public:
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/mtp-sql-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
        path_ = buf.data();
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

size_t countOf(const std::string& hay, const std::string& needle) {
    size_t n = 0;
    for (size_t pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1))
        ++n;
    return n;
}

SqlSettings sqliteSettings(const std::string& path, const std::string& password = "") {
    SqlSettings s;
    s.name = "db";
    s.dsn = Dsn::parse("dbi:SQLite:dbname=" + path);
    s.password = password;
    return s;
}

std::unique_ptr<SqlConnection> memoryDb(const std::string& password = "") {
    return mtp::makeSqlConnection(sqliteSettings(":memory:", password));
}

// The ConfigError message of Dsn::parse(text), or "" when it parses.
std::string dsnError(const std::string& text) {
    try {
        Dsn::parse(text);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

const std::string& cell(const SqlResult& r, size_t row, size_t col) {
    CPPUNIT_ASSERT(row < r.rows.size());
    CPPUNIT_ASSERT(col < r.rows[row].size());
    CPPUNIT_ASSERT_MESSAGE("unexpected NULL", r.rows[row][col].has_value());
    return *r.rows[row][col];
}

}  // namespace

class TestSql : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestSql);
    CPPUNIT_TEST(testDsnMysqlKeys);
    CPPUNIT_TEST(testDsnMysqlBareAndPositional);
    CPPUNIT_TEST(testDsnMysqlSocketAndIgnoredKeys);
    CPPUNIT_TEST(testDsnSqlite);
    CPPUNIT_TEST(testDsnPrefixErrors);
    CPPUNIT_TEST(testDsnMysqlErrors);
    CPPUNIT_TEST(testDsnSqliteErrors);
    CPPUNIT_TEST(testDsnErrorHidesValues);
    CPPUNIT_TEST(testFactoryDoesNoIo);
    CPPUNIT_TEST(testMemoryParamsRowsNulls);
    CPPUNIT_TEST(testAffectedCounts);
    CPPUNIT_TEST(testStatementReuse);
    CPPUNIT_TEST(testParamCountMismatch);
    CPPUNIT_TEST(testNoSuchTable);
    CPPUNIT_TEST(testNoSuchTableAfterDrop);
    CPPUNIT_TEST(testSyntaxError);
    CPPUNIT_TEST(testMoreThanOneStatement);
    CPPUNIT_TEST(testExecuteDirect);
    CPPUNIT_TEST(testTableExists);
    CPPUNIT_TEST(testLongAndBinaryishText);
    CPPUNIT_TEST(testTransactionTotal);
    CPPUNIT_TEST(testTransactionRollback);
    CPPUNIT_TEST(testFileWalAndPersistence);
    CPPUNIT_TEST(testConcurrentWriters);
    CPPUNIT_TEST(testForkedChildReopens);
    CPPUNIT_TEST(testOpenFailureLoggedOnce);
    CPPUNIT_TEST(testPasswordNeverInMessage);
    CPPUNIT_TEST_SUITE_END();

  public:
    void tearDown() override { mtp::log::toStderr("unit-tests"); }

    // --- Dsn::parse -------------------------------------------------------------------------

    void testDsnMysqlKeys() {
        Dsn d = Dsn::parse("dbi:mysql:database=mtpolicyd;host=db.example.org;port=3307");
        CPPUNIT_ASSERT(d.driver == Dsn::Driver::Mysql);
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string("db.example.org"), d.host);
        CPPUNIT_ASSERT_EQUAL(3307u, d.port);
        CPPUNIT_ASSERT_EQUAL(std::string(""), d.socket);

        d = Dsn::parse("DBI:mysql:db=x;host=localhost");
        CPPUNIT_ASSERT_EQUAL(std::string("x"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string("localhost"), d.host);
        CPPUNIT_ASSERT_EQUAL(0u, d.port);

        d = Dsn::parse("dbi:MySQL:dbname=y");
        CPPUNIT_ASSERT(d.driver == Dsn::Driver::Mysql);
        CPPUNIT_ASSERT_EQUAL(std::string("y"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string(""), d.host);

        // DBD::mysql's alias, white space around keys, a trailing ';'.
        d = Dsn::parse("  dbi:mysql: database = z ; hostname=h;  ");
        CPPUNIT_ASSERT_EQUAL(std::string("z"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string("h"), d.host);

        // An IPv6 literal in brackets (DBD::mysql's form); the brackets are dropped.
        d = Dsn::parse("dbi:mysql:database=m;host=[::1];port=3306");
        CPPUNIT_ASSERT_EQUAL(std::string("::1"), d.host);
        CPPUNIT_ASSERT_EQUAL(3306u, d.port);
        d = Dsn::parse("dbi:mysql:database=m;host=[2001:db8::5]");
        CPPUNIT_ASSERT_EQUAL(std::string("2001:db8::5"), d.host);
    }

    void testDsnMysqlBareAndPositional() {
        Dsn d = Dsn::parse("dbi:mysql:mtpolicyd");
        CPPUNIT_ASSERT(d.driver == Dsn::Driver::Mysql);
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string(""), d.host);

        // DBD::mysql: bare elements fill database, host and port in turn (':' or ';').
        d = Dsn::parse("dbi:mysql:mtpolicyd:db1:3310");
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string("db1"), d.host);
        CPPUNIT_ASSERT_EQUAL(3310u, d.port);

        d = Dsn::parse("dbi:mysql:mtpolicyd;host=db2");
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string("db2"), d.host);
    }

    void testDsnMysqlSocketAndIgnoredKeys() {
        Dsn d = Dsn::parse("dbi:mysql:database=mtpolicyd;mysql_socket=/run/mysqld/mysqld.sock");
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string("/run/mysqld/mysqld.sock"), d.socket);
        CPPUNIT_ASSERT_EQUAL(std::string(""), d.host);

        d = Dsn::parse(
            "dbi:mysql:database=a;host=localhost;mysql_enable_utf8=1;mysql_enable_utf8mb4=1;"
            "mysql_auto_reconnect=1;mysql_ssl=0");
        CPPUNIT_ASSERT_EQUAL(std::string("a"), d.database);
        CPPUNIT_ASSERT_EQUAL(std::string("localhost"), d.host);
    }

    void testDsnSqlite() {
        Dsn d = Dsn::parse("dbi:SQLite:dbname=/var/lib/mtpolicyd/mtpolicyd.sqlite");
        CPPUNIT_ASSERT(d.driver == Dsn::Driver::Sqlite);
        CPPUNIT_ASSERT_EQUAL(std::string("/var/lib/mtpolicyd/mtpolicyd.sqlite"), d.path);

        CPPUNIT_ASSERT_EQUAL(std::string(":memory:"),
                             Dsn::parse("dbi:SQLite:dbname=:memory:").path);
        CPPUNIT_ASSERT_EQUAL(std::string("/a"), Dsn::parse("DBI:sqlite:db=/a").path);
        CPPUNIT_ASSERT_EQUAL(std::string("/b"), Dsn::parse("dbi:SQLite:database=/b;").path);
        // DBD::SQLite: without '=' the rest is the file name, colons and all.
        CPPUNIT_ASSERT_EQUAL(std::string("/srv/db:1/x.sqlite"),
                             Dsn::parse("dbi:SQLite:/srv/db:1/x.sqlite").path);
        CPPUNIT_ASSERT_EQUAL(std::string("/with space/x.db"),
                             Dsn::parse("dbi:SQLite:dbname=/with space/x.db").path);
    }

    void testDsnPrefixErrors() {
        CPPUNIT_ASSERT(contains(dsnError(""), "must start with 'dbi:DRIVER:'"));
        CPPUNIT_ASSERT(contains(dsnError("mysql:database=x"), "must start with 'dbi:DRIVER:'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql"), "no ':' after the driver name"));
        CPPUNIT_ASSERT(contains(dsnError("dbi::database=x"), "no driver name"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:Pg:dbname=x"), "unknown driver 'Pg'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql(RaiseError=>1):x"), "driver attributes"));
        // Every message says it is about the dsn.
        CPPUNIT_ASSERT(contains(dsnError("dbi:Pg:dbname=x"), "invalid dsn"));
    }

    void testDsnMysqlErrors() {
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:"), "no database name"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:host=h;port=3306"), "no database name"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=;host=h"), "no database name"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=x;port=abc"), "bad port 'abc'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=x;port=0"), "bad port '0'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=x;port=65536"), "bad port '65536'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=x;port=-1"), "bad port '-1'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=x;port="), "bad port ''"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:x:h:99999"), "bad port '99999'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=x;foo=bar"), "unknown key 'foo'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=x;mysql_connect_timeout=5"),
                                "unknown key 'mysql_connect_timeout'"));
        CPPUNIT_ASSERT(
            contains(dsnError("dbi:mysql:database=x;db=y"), "database name given twice"));
        CPPUNIT_ASSERT(
            contains(dsnError("dbi:mysql:database=x;host=a;hostname=b"), "host given twice"));
        CPPUNIT_ASSERT(
            contains(dsnError("dbi:mysql:database=x;port=1;port=2"), "port given twice"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:x:h:1:extra"), "unexpected element 'extra'"));
        CPPUNIT_ASSERT(
            contains(dsnError("dbi:mysql:database=x;mysql_socket="), "mysql_socket is empty"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:mysql:database=x;host=[::1"), "unbalanced '['"));
    }

    void testDsnSqliteErrors() {
        CPPUNIT_ASSERT(contains(dsnError("dbi:SQLite:"), "no database file"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:SQLite:dbname="), "no database file"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:SQLite:dbname=/a;foo=1"), "unknown key 'foo'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:SQLite:dbname=/a;db=/b"), "given twice"));
        CPPUNIT_ASSERT(
            contains(dsnError("dbi:SQLite:dbname=/a;junk"), "unexpected element 'junk'"));
        CPPUNIT_ASSERT(contains(dsnError("dbi:SQLite:dbname=/a;sqlite_unicode=1"),
                                "unknown key 'sqlite_unicode'"));
    }

    // A DSN carrying credentials is refused without repeating them.
    void testDsnErrorHidesValues() {
        std::string e = dsnError("dbi:mysql:database=x;password=Hunter2Secret");
        CPPUNIT_ASSERT(contains(e, "'password' does not belong in the dsn"));
        CPPUNIT_ASSERT(!contains(e, "Hunter2Secret"));
        e = dsnError("dbi:SQLite:dbname=/a;password=Hunter2Secret");
        CPPUNIT_ASSERT(contains(e, "'password' does not belong in the dsn"));
        CPPUNIT_ASSERT(!contains(e, "Hunter2Secret"));
        e = dsnError("dbi:mysql:database=x;user=bob");
        CPPUNIT_ASSERT(contains(e, "'user' does not belong in the dsn"));
    }

    // --- driver selection ---------------------------------------------------------------------

    void testFactoryDoesNoIo() {
        TempDir dir;
        SqlSettings s;
        s.name = "remote";
        s.dsn = Dsn::parse("dbi:mysql:database=x;mysql_socket=" + dir.path() + "/none.sock");
        auto my = mtp::makeSqlConnection(s);
        CPPUNIT_ASSERT(my->driver() == Dsn::Driver::Mysql);
        CPPUNIT_ASSERT_EQUAL(std::string("remote"), my->name());

        // Creating a SQLite connection does not create the file; the first call does.
        std::string file = dir.path() + "/lazy.sqlite";
        auto lite = mtp::makeSqlConnection(sqliteSettings(file));
        CPPUNIT_ASSERT(lite->driver() == Dsn::Driver::Sqlite);
        CPPUNIT_ASSERT_EQUAL(std::string("db"), lite->name());
        CPPUNIT_ASSERT(!std::filesystem::exists(file));
        lite->executeDirect("CREATE TABLE t (a INTEGER)");
        CPPUNIT_ASSERT(std::filesystem::exists(file));
    }

    // --- SQLite driver --------------------------------------------------------------------------

    void testMemoryParamsRowsNulls() {
        auto db = memoryDb();
        db->executeDirect("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, f REAL)");
        SqlResult r = db->execute(
            "INSERT INTO t (id, name, n, f) VALUES (?, ?, ?, 2.5)",
            {SqlParam::of(1LL), SqlParam::of(std::string("alice")), SqlParam::of(-42LL)});
        CPPUNIT_ASSERT_EQUAL(uint64_t(1), r.affected);
        db->execute("INSERT INTO t (id, name, n) VALUES (?, ?, ?)",
                    {SqlParam::of(2LL), SqlParam::null(), SqlParam::of(9223372036854775807LL)});

        r = db->execute("SELECT id, name, n, f FROM t ORDER BY id", {});
        CPPUNIT_ASSERT_EQUAL(size_t(2), r.rows.size());
        CPPUNIT_ASSERT_EQUAL(uint64_t(0), r.affected);
        CPPUNIT_ASSERT_EQUAL(size_t(4), r.rows[0].size());
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(r, 0, 0));
        CPPUNIT_ASSERT_EQUAL(std::string("alice"), cell(r, 0, 1));
        CPPUNIT_ASSERT_EQUAL(std::string("-42"), cell(r, 0, 2));
        CPPUNIT_ASSERT_EQUAL(std::string("2.5"), cell(r, 0, 3));
        CPPUNIT_ASSERT(!r.rows[1][1].has_value());  // NULL name
        CPPUNIT_ASSERT_EQUAL(std::string("9223372036854775807"), cell(r, 1, 2));
        CPPUNIT_ASSERT(!r.rows[1][3].has_value());  // f defaulted to NULL

        // An empty string is not NULL.
        db->execute("UPDATE t SET name = ? WHERE id = ?",
                    {SqlParam::of(std::string("")), SqlParam::of(2LL)});
        r = db->execute("SELECT name FROM t WHERE id = ?", {SqlParam::of(2LL)});
        CPPUNIT_ASSERT_EQUAL(std::string(""), cell(r, 0, 0));

        // Comparing with a NULL parameter matches nothing; IS NULL binds fine.
        r = db->execute("SELECT COUNT(*) FROM t WHERE name = ?", {SqlParam::null()});
        CPPUNIT_ASSERT_EQUAL(std::string("0"), cell(r, 0, 0));
        r = db->execute("SELECT ? IS NULL", {SqlParam::null()});
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(r, 0, 0));

        // No rows is an empty result, not an error.
        r = db->execute("SELECT name FROM t WHERE id = ?", {SqlParam::of(99LL)});
        CPPUNIT_ASSERT(r.rows.empty());
    }

    void testAffectedCounts() {
        auto db = memoryDb();
        db->executeDirect("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)");
        for (const char* k : {"a", "b", "c"})
            CPPUNIT_ASSERT_EQUAL(uint64_t(1), db->execute("INSERT INTO t VALUES (?, 0)",
                                                          {SqlParam::of(std::string(k))})
                                                  .affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(3), db->execute("UPDATE t SET n = n + 1", {}).affected);
        // Matched rows count even when the value does not change (as with CLIENT_FOUND_ROWS).
        CPPUNIT_ASSERT_EQUAL(uint64_t(2), db->execute("UPDATE t SET n = 1 WHERE k <> ?",
                                                      {SqlParam::of(std::string("a"))})
                                              .affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(0), db->execute("UPDATE t SET n = 5 WHERE k = ?",
                                                      {SqlParam::of(std::string("zz"))})
                                              .affected);
        // A SELECT or DDL after a change does not report the earlier count.
        CPPUNIT_ASSERT_EQUAL(uint64_t(1), db->execute("DELETE FROM t WHERE k = 'c'", {}).affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(0), db->execute("SELECT * FROM t", {}).affected);
        CPPUNIT_ASSERT_EQUAL(uint64_t(0), db->execute("CREATE TABLE u (x INTEGER)", {}).affected);
        // Upsert: one row inserted or updated.
        CPPUNIT_ASSERT_EQUAL(
            uint64_t(1),
            db->execute("INSERT INTO t VALUES (?, 1) ON CONFLICT(k) DO UPDATE SET n = n + 1",
                        {SqlParam::of(std::string("a"))})
                .affected);
        SqlResult r = db->execute("SELECT n FROM t WHERE k = 'a'", {});
        CPPUNIT_ASSERT_EQUAL(std::string("2"), cell(r, 0, 0));
    }

    void testStatementReuse() {
        auto db = memoryDb();
        db->executeDirect("CREATE TABLE t (k TEXT, n INTEGER)");
        const std::string ins = "INSERT INTO t VALUES (?, ?)";
        for (long long i = 0; i < 100; ++i)
            db->execute(ins, {SqlParam::of("k" + std::to_string(i % 10)), SqlParam::of(i)});
        const std::string sel = "SELECT COUNT(*), SUM(n) FROM t WHERE k = ?";
        SqlResult a = db->execute(sel, {SqlParam::of(std::string("k3"))});
        SqlResult b = db->execute(sel, {SqlParam::of(std::string("k4"))});
        CPPUNIT_ASSERT_EQUAL(std::string("10"), cell(a, 0, 0));
        CPPUNIT_ASSERT_EQUAL(std::string("480"), cell(a, 0, 1));  // 3+13+...+93
        CPPUNIT_ASSERT_EQUAL(std::string("490"), cell(b, 0, 1));
        // A statement that fails while stepping (abs() of the smallest integer overflows) is
        // reset and works again with other parameters.
        db->execute(ins,
                    {SqlParam::of(std::string("min")), SqlParam::of(-9223372036854775807LL - 1)});
        const std::string abs = "SELECT abs(n) FROM t WHERE k = ? OR k = ? ORDER BY n DESC";
        CPPUNIT_ASSERT_THROW(
            db->execute(abs, {SqlParam::of(std::string("k1")), SqlParam::of(std::string("min"))}),
            DbError);
        SqlResult c =
            db->execute(abs, {SqlParam::of(std::string("k1")), SqlParam::of(std::string("k2"))});
        CPPUNIT_ASSERT_EQUAL(size_t(20), c.rows.size());
        CPPUNIT_ASSERT_EQUAL(std::string("92"), cell(c, 0, 0));
    }

    void testParamCountMismatch() {
        auto db = memoryDb();
        try {
            db->execute("SELECT ?, ?", {SqlParam::of(1LL)});
            CPPUNIT_FAIL("expected DbError");
        } catch (const DbError& e) {
            CPPUNIT_ASSERT(contains(e.what(), "expects 2 parameters, got 1"));
        }
        // The connection is fine afterwards, and so is the same SQL with the right count.
        SqlResult r = db->execute("SELECT ?, ?", {SqlParam::of(1LL), SqlParam::of(2LL)});
        CPPUNIT_ASSERT_EQUAL(std::string("2"), cell(r, 0, 1));
    }

    void testNoSuchTable() {
        auto db = memoryDb();
        try {
            db->execute("SELECT n FROM acct_client_address WHERE key = ?",
                        {SqlParam::of(std::string("x"))});
            CPPUNIT_FAIL("expected DbNoSuchTable");
        } catch (const DbNoSuchTable& e) {
            CPPUNIT_ASSERT(contains(e.what(), "database 'db'"));
            CPPUNIT_ASSERT(contains(e.what(), "no such table"));
            CPPUNIT_ASSERT(contains(e.what(), "acct_client_address"));
        }
        CPPUNIT_ASSERT_THROW(db->executeDirect("DELETE FROM missing"), DbNoSuchTable);
        // Once it exists, the same SQL works.
        db->executeDirect("CREATE TABLE acct_client_address (key TEXT, n INTEGER)");
        SqlResult r = db->execute("SELECT n FROM acct_client_address WHERE key = ?",
                                  {SqlParam::of(std::string("x"))});
        CPPUNIT_ASSERT(r.rows.empty());
    }

    // A cached statement whose table has been dropped reports the missing table, too.
    void testNoSuchTableAfterDrop() {
        auto db = memoryDb();
        db->executeDirect("CREATE TABLE t (n INTEGER)");
        const std::string sel = "SELECT n FROM t";
        db->execute(sel, {});
        db->executeDirect("DROP TABLE t");
        CPPUNIT_ASSERT_THROW(db->execute(sel, {}), DbNoSuchTable);
        db->executeDirect("CREATE TABLE t (n INTEGER)");
        db->executeDirect("INSERT INTO t VALUES (7)");
        CPPUNIT_ASSERT_EQUAL(std::string("7"), cell(db->execute(sel, {}), 0, 0));
    }

    void testSyntaxError() {
        auto db = memoryDb();
        try {
            db->execute("SELEKT 1", {});
            CPPUNIT_FAIL("expected DbError");
        } catch (const DbNoSuchTable&) {
            CPPUNIT_FAIL("a syntax error is not a missing table");
        } catch (const DbError& e) {
            CPPUNIT_ASSERT(contains(e.what(), "database 'db'"));
            CPPUNIT_ASSERT(contains(e.what(), "syntax error"));
            CPPUNIT_ASSERT(contains(e.what(), "SELEKT 1"));
        }
        CPPUNIT_ASSERT_THROW(db->executeDirect("CREATE TABLE (x)"), DbError);
        // A constraint violation is a DbError, and the statement stays usable.
        db->executeDirect("CREATE TABLE u (k TEXT PRIMARY KEY)");
        db->execute("INSERT INTO u VALUES (?)", {SqlParam::of(std::string("a"))});
        CPPUNIT_ASSERT_THROW(
            db->execute("INSERT INTO u VALUES (?)", {SqlParam::of(std::string("a"))}), DbError);
        CPPUNIT_ASSERT_EQUAL(
            uint64_t(1),
            db->execute("INSERT INTO u VALUES (?)", {SqlParam::of(std::string("b"))}).affected);
    }

    void testMoreThanOneStatement() {
        auto db = memoryDb();
        db->executeDirect("CREATE TABLE t (n INTEGER)");
        CPPUNIT_ASSERT_THROW(db->execute("INSERT INTO t VALUES (1); DROP TABLE t", {}), DbError);
        CPPUNIT_ASSERT(db->tableExists("t"));
        // A trailing ';' or comment is not a second statement.
        db->execute("INSERT INTO t VALUES (1);", {});
        db->execute("INSERT INTO t VALUES (2); -- done", {});
        CPPUNIT_ASSERT_EQUAL(std::string("2"),
                             cell(db->execute("SELECT COUNT(*) FROM t", {}), 0, 0));
    }

    void testExecuteDirect() {
        auto db = memoryDb();
        // Several statements (a schema script), and transactions.
        db->executeDirect("CREATE TABLE a (n INTEGER); CREATE TABLE b (n INTEGER);");
        db->executeDirect("BEGIN");
        db->executeDirect("INSERT INTO a VALUES (1)");
        db->executeDirect("ROLLBACK");
        CPPUNIT_ASSERT_EQUAL(std::string("0"),
                             cell(db->execute("SELECT COUNT(*) FROM a", {}), 0, 0));
        db->executeDirect("BEGIN");
        db->execute("INSERT INTO b VALUES (?)", {SqlParam::of(5LL)});
        db->executeDirect("COMMIT");
        CPPUNIT_ASSERT_EQUAL(std::string("5"), cell(db->execute("SELECT n FROM b", {}), 0, 0));
        // A SELECT through executeDirect is allowed (its rows are discarded).
        db->executeDirect("SELECT * FROM b");
    }

    void testTableExists() {
        auto db = memoryDb();
        CPPUNIT_ASSERT(!db->tableExists("acct_sender"));
        db->executeDirect("CREATE TABLE acct_sender (k TEXT)");
        CPPUNIT_ASSERT(db->tableExists("acct_sender"));
        CPPUNIT_ASSERT(db->tableExists("ACCT_SENDER"));  // SQLite names are case-insensitive
        CPPUNIT_ASSERT(!db->tableExists("acct_sende"));
        CPPUNIT_ASSERT(!db->tableExists("acct_sender' OR '1'='1"));  // bound, not pasted
        db->executeDirect("CREATE INDEX acct_idx ON acct_sender (k)");
        CPPUNIT_ASSERT(!db->tableExists("acct_idx"));  // an index is not a table
    }

    void testLongAndBinaryishText() {
        auto db = memoryDb();
        db->executeDirect("CREATE TABLE t (v TEXT)");
        std::string big(100000, 'x');
        big[500] = '\n';
        std::string utf8 = "gr\xc3\xbc\xc3\x9f \xf0\x9f\x93\xa7";  // "grüß 📧"
        std::string quote = "it's \"quoted\"; DROP TABLE t; --";
        for (const auto& v : {big, utf8, quote})
            db->execute("INSERT INTO t VALUES (?)", {SqlParam::of(v)});
        SqlResult r = db->execute("SELECT v FROM t ORDER BY rowid", {});
        CPPUNIT_ASSERT_EQUAL(size_t(3), r.rows.size());
        CPPUNIT_ASSERT(cell(r, 0, 0) == big);
        CPPUNIT_ASSERT_EQUAL(utf8, cell(r, 1, 0));
        CPPUNIT_ASSERT_EQUAL(quote, cell(r, 2, 0));
    }

    // executeTransaction (SQLite: begin(), each statement, commit()) returns the total of
    // changed rows; the values arrive as bound.
    void testTransactionTotal() {
        auto db = memoryDb();
        db->executeDirect("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)");
        const std::string ins = "INSERT INTO t VALUES (?, ?)";
        const std::string odd = "it's \\ \"x\" gr\xc3\xbc\xc3\x9f";
        std::vector<SqlStatement> tx = {
            {ins, {SqlParam::of(std::string("a")), SqlParam::of(1LL)}},
            {"INSERT INTO t VALUES (?, ?), (?, ?)",
             {SqlParam::of(std::string("b")), SqlParam::of(2LL), SqlParam::of(odd),
              SqlParam::null()}},
            {"UPDATE t SET n = n + ? WHERE n IS NOT NULL", {SqlParam::of(10LL)}},
        };
        CPPUNIT_ASSERT_EQUAL(uint64_t(5), db->executeTransaction(tx));  // 1 + 2 + 2
        std::vector<SqlRow> rows = db->execute("SELECT k, n FROM t ORDER BY k", {}).rows;
        std::vector<SqlRow> expected = {{std::string("a"), std::string("11")},
                                        {std::string("b"), std::string("12")},
                                        {odd, std::nullopt}};
        CPPUNIT_ASSERT(rows == expected);
        // Nothing matched: 0. No statements at all: 0.
        CPPUNIT_ASSERT_EQUAL(uint64_t(0),
                             db->executeTransaction(
                                 {{"DELETE FROM t WHERE k = ?", {SqlParam::of(std::string("zz"))}}}));
        CPPUNIT_ASSERT_EQUAL(uint64_t(0), db->executeTransaction({}));
        CPPUNIT_ASSERT_EQUAL(std::string("3"), cell(db->execute("SELECT COUNT(*) FROM t", {}), 0, 0));
    }

    // A failing statement rolls back those before it and throws (DbNoSuchTable for a missing
    // table); the connection stays usable and holds no lock (a second connection to the same
    // file can write at once).
    void testTransactionRollback() {
        TempDir dir;
        std::string file = dir.path() + "/tx.sqlite";
        auto db = mtp::makeSqlConnection(sqliteSettings(file));
        auto other = mtp::makeSqlConnection(sqliteSettings(file));
        db->executeDirect("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)");
        const std::string ins = "INSERT INTO t VALUES (?, ?)";
        const std::string all = "SELECT k, n FROM t ORDER BY k";
        db->execute(ins, {SqlParam::of(std::string("a")), SqlParam::of(1LL)});
        const std::vector<SqlRow> before = {{std::string("a"), std::string("1")}};

        CPPUNIT_ASSERT_THROW(
            db->executeTransaction({{ins, {SqlParam::of(std::string("b")), SqlParam::of(2LL)}},
                                    {"INSERT INTO missing VALUES (?)", {SqlParam::of(1LL)}}}),
            DbNoSuchTable);
        CPPUNIT_ASSERT(db->execute(all, {}).rows == before);

        // A constraint violation in the third statement: DbError, the UPDATE and INSERT undone.
        try {
            db->executeTransaction(
                {{"UPDATE t SET n = n + 10", {}},
                 {ins, {SqlParam::of(std::string("c")), SqlParam::of(3LL)}},
                 {ins, {SqlParam::of(std::string("a")), SqlParam::of(9LL)}}});
            CPPUNIT_FAIL("expected DbError");
        } catch (const DbNoSuchTable&) {
            CPPUNIT_FAIL("a constraint violation is not a missing table");
        } catch (const DbError& e) {
            CPPUNIT_ASSERT(contains(e.what(), "database 'db'"));
            CPPUNIT_ASSERT(contains(e.what(), "UNIQUE"));
        }
        CPPUNIT_ASSERT(db->execute(all, {}).rows == before);
        CPPUNIT_ASSERT(other->execute(all, {}).rows == before);

        // No transaction left open: another connection writes without waiting for a lock, and
        // the same connection works for execute() and another transaction.
        CPPUNIT_ASSERT_EQUAL(
            uint64_t(1),
            other->execute(ins, {SqlParam::of(std::string("o")), SqlParam::of(0LL)}).affected);
        CPPUNIT_ASSERT_EQUAL(
            uint64_t(1),
            db->execute(ins, {SqlParam::of(std::string("d")), SqlParam::of(4LL)}).affected);
        CPPUNIT_ASSERT_EQUAL(
            uint64_t(2),
            db->executeTransaction({{ins, {SqlParam::of(std::string("e")), SqlParam::of(5LL)}},
                                    {ins, {SqlParam::of(std::string("f")), SqlParam::of(6LL)}}}));
        std::vector<SqlRow> expected = {{std::string("a"), std::string("1")},
                                        {std::string("d"), std::string("4")},
                                        {std::string("e"), std::string("5")},
                                        {std::string("f"), std::string("6")},
                                        {std::string("o"), std::string("0")}};
        CPPUNIT_ASSERT(other->execute(all, {}).rows == expected);
    }

    void testFileWalAndPersistence() {
        TempDir dir;
        std::string file = dir.path() + "/mtpolicyd.sqlite";
        {
            auto db = mtp::makeSqlConnection(sqliteSettings(file));
            SqlResult r = db->execute("PRAGMA journal_mode", {});
            CPPUNIT_ASSERT_EQUAL(std::string("wal"), cell(r, 0, 0));
            r = db->execute("PRAGMA synchronous", {});
            CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(r, 0, 0));  // NORMAL
            r = db->execute("PRAGMA busy_timeout", {});
            CPPUNIT_ASSERT(std::stol(cell(r, 0, 0)) >= 5000);
            db->executeDirect("CREATE TABLE t (k TEXT, n INTEGER)");
            db->execute("INSERT INTO t VALUES (?, ?)",
                        {SqlParam::of(std::string("a")), SqlParam::of(3LL)});
        }
        auto db = mtp::makeSqlConnection(sqliteSettings(file));
        CPPUNIT_ASSERT(db->tableExists("t"));
        CPPUNIT_ASSERT_EQUAL(std::string("3"), cell(db->execute("SELECT n FROM t", {}), 0, 0));
        // In-memory databases stay in their own journal mode.
        auto mem = memoryDb();
        CPPUNIT_ASSERT_EQUAL(std::string("memory"),
                             cell(mem->execute("PRAGMA journal_mode", {}), 0, 0));
    }

    // Two processes with their own connections bump one counter 500 times each. Without WAL
    // and the busy timeout, some updates fail with "database is locked".
    void testConcurrentWriters() {
        TempDir dir;
        std::string file = dir.path() + "/shared.sqlite";
        {
            auto db = mtp::makeSqlConnection(sqliteSettings(file));
            db->executeDirect("CREATE TABLE t (n INTEGER NOT NULL)");
            db->executeDirect("INSERT INTO t VALUES (0)");
        }
        std::vector<pid_t> kids;
        for (int k = 0; k < 2; ++k) {
            pid_t pid = fork();
            CPPUNIT_ASSERT(pid >= 0);
            if (pid == 0) {
                int status = 0;
                try {
                    auto db = mtp::makeSqlConnection(sqliteSettings(file));
                    for (int i = 0; i < 500; ++i)
                        if (db->execute("UPDATE t SET n = n + 1", {}).affected != 1) status = 2;
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "child: %s\n", e.what());
                    status = 1;
                }
                _exit(status);  // no atexit handlers, no CppUnit teardown in the child
            }
            kids.push_back(pid);
        }
        for (pid_t pid : kids) {
            int status = 0;
            CPPUNIT_ASSERT_EQUAL(pid, waitpid(pid, &status, 0));
            CPPUNIT_ASSERT_MESSAGE("child failed", WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        auto db = mtp::makeSqlConnection(sqliteSettings(file));
        CPPUNIT_ASSERT_EQUAL(std::string("1000"), cell(db->execute("SELECT n FROM t", {}), 0, 0));
    }

    // A connection object opened before fork is reopened by the child (SQLite handles must not
    // cross fork) and the parent's handle keeps working.
    void testForkedChildReopens() {
        TempDir dir;
        auto db = mtp::makeSqlConnection(sqliteSettings(dir.path() + "/f.sqlite"));
        db->executeDirect("CREATE TABLE t (n INTEGER NOT NULL)");
        db->executeDirect("INSERT INTO t VALUES (0)");
        pid_t pid = fork();
        CPPUNIT_ASSERT(pid >= 0);
        if (pid == 0) {
            int rc = 0;
            try {
                if (db->execute("UPDATE t SET n = n + 1", {}).affected != 1) rc = 2;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "child: %s\n", e.what());
                rc = 1;
            }
            _exit(rc);
        }
        int status = 0;
        CPPUNIT_ASSERT_EQUAL(pid, waitpid(pid, &status, 0));
        CPPUNIT_ASSERT_MESSAGE("child failed", WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(db->execute("SELECT n FROM t", {}), 0, 0));
        db->execute("UPDATE t SET n = n + 1", {});
        CPPUNIT_ASSERT_EQUAL(std::string("2"), cell(db->execute("SELECT n FROM t", {}), 0, 0));
    }

    // A file that cannot be opened fails every call, is logged once, and the first success
    // afterwards is logged as the end of the outage.
    void testOpenFailureLoggedOnce() {
        TempDir dir;
        std::string logPath = dir.path() + "/test.log";
        mtp::log::toFile(logPath, "test");
        std::string sub = dir.path() + "/later";
        auto db = mtp::makeSqlConnection(sqliteSettings(sub + "/x.sqlite"));
        for (int i = 0; i < 5; ++i) {
            try {
                db->execute("SELECT 1", {});
                CPPUNIT_FAIL("expected DbError");
            } catch (const DbError& e) {
                CPPUNIT_ASSERT(
                    contains(e.what(), "database 'db': cannot open " + sub + "/x.sqlite"));
            }
        }
        std::filesystem::create_directory(sub);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), cell(db->execute("SELECT 1", {}), 0, 0));
        db->execute("SELECT 2", {});
        std::string log = readFile(logPath);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(log, size_t(1), countOf(log, "database 'db': cannot open"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(log, size_t(1),
                                     countOf(log, "database 'db': connection re-established"));
    }

    // Whatever ends up in an error message, the password does not.
    void testPasswordNeverInMessage() {
        const std::string pw = "Hunter2Secret";
        auto db = memoryDb(pw);
        std::vector<std::string> messages;
        auto collect = [&](auto fn) {
            try {
                fn();
                CPPUNIT_FAIL("expected DbError");
            } catch (const DbError& e) {
                messages.push_back(e.what());
            }
        };
        // SQLite repeats the unknown column and table names in its messages.
        collect([&] { db->execute("SELECT " + pw + " FROM sqlite_master", {}); });
        collect([&] { db->execute("SELECT 1 FROM " + pw, {}); });
        collect([&] { db->executeDirect("SELECT " + pw); });
        for (const auto& m : messages) {
            CPPUNIT_ASSERT_MESSAGE(m, !contains(m, pw));
            CPPUNIT_ASSERT_MESSAGE(m, contains(m, "***"));
        }
    }
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestSql);
