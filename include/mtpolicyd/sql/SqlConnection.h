// The database interface shared by every SQL plugin, with two drivers: MySQL/MariaDB
// (libmysqlclient / MariaDB Connector/C) and SQLite.
//
// A SqlConnection is created in the master from the configuration without any I/O; each
// worker connects lazily on first use after fork, so every worker has its own handle. Every
// value from a request is bound to a `?` placeholder of a prepared statement; statements are
// prepared once per SQL text and cached for the life of the handle.
//
// A lost connection (server restart, idle timeout) is re-established on a later call: the
// failing call throws DbError, the outage is logged once when it starts and once when it
// ends, and while the server stays unreachable a reconnect is attempted at most once a second
// (calls in between fail at once). Writes are never retried inside a call, so nothing is
// counted twice.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mtpolicyd/util/Errors.h"

namespace mtp {

// A statement referred to a table that does not exist (MySQL error 1146, SQLite "no such
// table"). Quota treats it as a count of 0.
class DbNoSuchTable : public DbError {
public:
    using DbError::DbError;
};

// mtpolicyd's Perl DBI data source names:
//   dbi:mysql:database=NAME;host=HOST;port=PORT      (also db= / dbname=)
//   dbi:mysql:NAME                                    (bare database name)
//   dbi:mysql:database=NAME;mysql_socket=/path        (unix socket)
//   dbi:SQLite:dbname=/path   (also dbname=:memory:)
// "dbi" and the driver name are case-insensitive. host=localhost without a port means the
// server's default unix socket (as libmysqlclient does).
struct Dsn {
    enum class Driver { Mysql, Sqlite };
    Driver driver = Driver::Sqlite;
    std::string database;  // MySQL database name
    std::string host;      // MySQL host (empty: localhost)
    unsigned port = 0;     // MySQL port (0: default)
    std::string socket;    // MySQL unix socket path
    std::string path;      // SQLite file (or ":memory:")

    // Throws ConfigError with a message that names what is wrong (no file/line: the caller adds them).
    static Dsn parse(const std::string& text);
};

struct SqlSettings {
    std::string name;  // the connection's name in the configuration ("db")
    Dsn dsn;
    std::string user;
    std::string password;  // never logged
    int connectTimeout = 5;
    int readTimeout = 10;
    int writeTimeout = 10;
};

struct SqlParam {
    enum class Kind { Null, Integer, Text };
    Kind kind = Kind::Null;
    long long integer = 0;
    std::string text;

    static SqlParam null() { return SqlParam(); }
    static SqlParam of(long long v) {
        SqlParam p;
        p.kind = Kind::Integer;
        p.integer = v;
        return p;
    }
    static SqlParam of(std::string v) {
        SqlParam p;
        p.kind = Kind::Text;
        p.text = std::move(v);
        return p;
    }
};

// One statement of a batch (SqlConnection::executeTransaction).
struct SqlStatement {
    std::string sql;
    std::vector<SqlParam> params;
};

using SqlRow = std::vector<std::optional<std::string>>;  // nullopt = SQL NULL

struct SqlResult {
    std::vector<SqlRow> rows;  // every row of a SELECT, columns as text
    uint64_t affected = 0;     // rows changed by INSERT/UPDATE/DELETE
};

class SqlConnection {
public:
    virtual ~SqlConnection() = default;

    // Prepares (once, cached) and runs a statement with `?` placeholders. Connects first when
    // needed. Throws DbNoSuchTable / DbError; the message names the connection, never the password.
    virtual SqlResult execute(const std::string& sql, const std::vector<SqlParam>& params) = 0;
    // Runs a statement without parameters and without preparing it (DDL).
    virtual void executeDirect(const std::string& sql) = 0;
    // A transaction: begin(), statements, commit(); rollback() after a failure (never
    // throws). Inside a transaction a lost connection is never replaced: every further call
    // fails (the server has rolled the transaction back) until rollback(). When commit()
    // itself fails on a lost connection, whether it took effect is unknown.
    virtual void begin() = 0;
    virtual void commit() = 0;
    virtual void rollback() noexcept = 0;
    // Runs `statements` in order as one transaction and returns the number of rows they
    // changed in total; when one fails, the transaction is rolled back and DbError is thrown.
    // By default begin(), execute() each, commit(). MariaDB sends them as one prepared compound
    // statement (BEGIN NOT ATOMIC ... END): one round trip however many statements, so each
    // statement must be valid inside one (no DDL, no result sets). Not inside begin()/commit().
    virtual uint64_t executeTransaction(const std::vector<SqlStatement>& statements);
    // True when executeTransaction needs one round trip (connected to MariaDB 10.1.1 or later).
    virtual bool oneRoundTripTransactions() { return false; }
    virtual bool tableExists(const std::string& table) = 0;
    virtual Dsn::Driver driver() const = 0;
    virtual const std::string& name() const = 0;
};

// Creates the driver for settings.dsn. No I/O happens until the first call.
std::unique_ptr<SqlConnection> makeSqlConnection(const SqlSettings& settings);

}  // namespace mtp
