// The MySQL/MariaDB driver (MariaDB Connector/C). A MysqlConnection owns one MYSQL* (connected
// lazily, in the process that uses it) and a cache of prepared statements keyed by SQL text; the
// statements belong to that handle and are dropped with it.
//
// Outages: a call that finds the session gone (server restart, KILL, network) closes the handle,
// logs "connection lost" once and throws. The next call reconnects; while the server stays
// unreachable, a connect is attempted at most once a second and calls in between fail at once,
// so a dead database costs a worker nothing but a log line per outage. A statement that may have
// reached the server is never sent again (no counter is bumped twice); only an idle handle is
// checked with mysql_ping before use and replaced quietly when the server has dropped it.
#include <mysql.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "Drivers.h"
#include "mtpolicyd/util/Log.h"

namespace mtp {
namespace sqldetail {

namespace {

using Clock = std::chrono::steady_clock;

// Error numbers (errmsg.h, mysqld_error.h), spelled out because MySQL's and MariaDB's headers
// do not define the same set.
enum : unsigned {
    kErServerShutdown = 1053,      // ER_SERVER_SHUTDOWN
    kErNoSuchTable = 1146,         // ER_NO_SUCH_TABLE
    kErAbortingConnection = 1152,  // ER_ABORTING_CONNECTION
    kErUnknownStmtHandler = 1243,  // ER_UNKNOWN_STMT_HANDLER: the server forgot our statements
    kErConnectionKilled = 1927,    // ER_CONNECTION_KILLED
    kCrConnectionError = 2002,     // CR_CONNECTION_ERROR (unix socket)
    kCrConnHostError = 2003,       // CR_CONN_HOST_ERROR (TCP)
    kCrUnknownHost = 2005,         // CR_UNKNOWN_HOST
    kCrServerGoneError = 2006,     // CR_SERVER_GONE_ERROR
    kCrServerLost = 2013,          // CR_SERVER_LOST
    kCrCommandsOutOfSync = 2014,   // CR_COMMANDS_OUT_OF_SYNC: the protocol state is unknown
    kCrInvalidConnHandle = 2048,   // CR_INVALID_CONN_HANDLE
    kCrServerLostExtended = 2055,  // CR_SERVER_LOST_EXTENDED
    kCrStmtClosed = 2056,          // CR_STMT_CLOSED: statement detached from a closed handle
};

// True when the error leaves the session unusable: the handle must be closed and reopened.
bool isConnectionError(unsigned err, const std::string& msg) {
    switch (err) {
        case kErServerShutdown:
        case kErAbortingConnection:
        case kErUnknownStmtHandler:
        case kErConnectionKilled:
        case kCrConnectionError:
        case kCrConnHostError:
        case kCrUnknownHost:
        case kCrServerGoneError:
        case kCrServerLost:
        case kCrCommandsOutOfSync:
        case kCrInvalidConnHandle:
        case kCrServerLostExtended:
        case kCrStmtClosed:
            return true;
        default:
            break;
    }
    // Some client paths report a dead socket under a generic number; the text is stable.
    return msg.find("server has gone away") != std::string::npos ||
           msg.find("Lost connection") != std::string::npos;
}

struct MysqlCloser {
    void operator()(MYSQL* m) const noexcept { mysql_close(m); }
};
struct StmtCloser {
    void operator()(MYSQL_STMT* st) const noexcept { mysql_stmt_close(st); }
};
struct ResultFreer {
    void operator()(MYSQL_RES* r) const noexcept { mysql_free_result(r); }
};
using MysqlPtr = std::unique_ptr<MYSQL, MysqlCloser>;
using StmtPtr = std::unique_ptr<MYSQL_STMT, StmtCloser>;
using ResultPtr = std::unique_ptr<MYSQL_RES, ResultFreer>;

// my_bool in Connector/C, bool in libmysqlclient 8: take whatever MYSQL_BIND uses.
using BindBool = std::remove_pointer_t<decltype(MYSQL_BIND::is_null)>;

// Frees a statement's result set (stored rows) when a call ends, however it ends.
class FreeResultGuard {
  public:
    explicit FreeResultGuard(MYSQL_STMT* st) : st_(st) {}
    ~FreeResultGuard() { mysql_stmt_free_result(st_); }
    FreeResultGuard(const FreeResultGuard&) = delete;
    FreeResultGuard& operator=(const FreeResultGuard&) = delete;

  private:
    MYSQL_STMT* st_;
};

// A failed client call, carried out of the code that holds raw pointers so that the handle and
// cache can be cleaned up in one place. It never leaves this file.
struct Failure : std::exception {
    Failure(unsigned e, std::string m) : err(e), msg(std::move(m)) {}
    const char* what() const noexcept override { return msg.c_str(); }
    unsigned err;
    std::string msg;
};

Failure stmtFailure(MYSQL_STMT* st) { return Failure(mysql_stmt_errno(st), mysql_stmt_error(st)); }

// The `?` placeholders of a statement: those outside quoted strings, quoted identifiers and
// comments (what the server counts when it prepares the statement).
size_t countPlaceholders(const std::string& sql) {
    size_t n = 0;
    for (size_t i = 0; i < sql.size(); ++i) {
        char c = sql[i];
        if (c == '\'' || c == '"' || c == '`') {
            for (++i; i < sql.size() && sql[i] != c; ++i)
                if (sql[i] == '\\' && c != '`') ++i;
        } else if (c == '#' || (c == '-' && sql.compare(i, 2, "--") == 0 &&
                                (i + 2 == sql.size() || std::isspace(static_cast<unsigned char>(sql[i + 2]))))) {
            i = sql.find('\n', i);
            if (i == std::string::npos) break;
        } else if (c == '/' && sql.compare(i, 2, "/*") == 0) {
            i = sql.find("*/", i + 2);
            if (i == std::string::npos) break;
            ++i;
        } else if (c == '?') {
            ++n;
        }
    }
    return n;
}

// Result columns start with a buffer this large; longer values are fetched again in full.
constexpr unsigned long kMinColumnBuffer = 64;

class MysqlConnection final : public SqlConnection {
  public:
    MysqlConnection(const SqlSettings& settings, std::chrono::milliseconds pingAfterIdle, bool compound)
        : settings_(settings), pingAfterIdle_(pingAfterIdle), allowCompound_(compound) {}

    ~MysqlConnection() override {
        if (db_ && owner_ != processGeneration()) abandon();
        stmts_.clear();  // statements before the handle they belong to
    }

    SqlResult execute(const std::string& sql, const std::vector<SqlParam>& params) override {
        // A session that died while we were idle (server restart) is noticed by the first
        // command. When that command provably never ran on the server (it failed while being
        // prepared, or could not be sent at all), it is tried once more on a new session, so a
        // restart costs no request. A statement that may have run is never repeated.
        bool wasDown = down_;
        try {
            return executeOnce(sql, params);
        } catch (const DbError&) {
            // Never inside a transaction: the new session would run it outside of it.
            if (!retrySafe_ || wasDown || inTransaction_) throw;
        }
        return executeOnce(sql, params);
    }

    void begin() override {
        executeDirect("START TRANSACTION");
        inTransaction_ = true;
    }

    void commit() override {
        try {
            executeDirect("COMMIT");
        } catch (...) {
            inTransaction_ = false;
            throw;
        }
        inTransaction_ = false;
    }

    void rollback() noexcept override {
        bool open = inTransaction_ && db_;
        inTransaction_ = false;
        if (!open) return;
        try {
            executeDirect("ROLLBACK");
        } catch (...) {
            // The session is gone or broken: the server rolls back on its own.
        }
    }

    // MariaDB (10.1.1 and later): one prepared anonymous compound statement, "BEGIN NOT
    // ATOMIC <on any error: ROLLBACK, RESIGNAL>; START TRANSACTION; s1; ...; sN; COMMIT; END",
    // cached like any statement: one round trip, one reply, whose affected-row count is the
    // total of the statements inside. MySQL: the statements one by one in a transaction.
    uint64_t executeTransaction(const std::vector<SqlStatement>& statements) override {
        if (inTransaction_) throw DbError(prefix() + "executeTransaction inside a transaction");
        handle();  // connects, so that compound_ is known
        if (!compound_) return SqlConnection::executeTransaction(statements);
        std::string sql =
            "BEGIN NOT ATOMIC DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; "
            "START TRANSACTION; ";
        std::vector<SqlParam> params;
        for (const auto& st : statements) {
            // The statements share one parameter list: each must bring exactly its own.
            size_t expected = countPlaceholders(st.sql);
            if (expected != st.params.size())
                throw DbError(prefix() + "statement expects " + std::to_string(expected) + " parameters, got " +
                              std::to_string(st.params.size()) + " (statement: " + st.sql + ")");
            // Without a trailing ';' of its own, and ended on a new line, so that a trailing
            // comment ends with its statement.
            size_t end = st.sql.find_last_not_of(" \t\r\n;");
            sql += st.sql.substr(0, end == std::string::npos ? 0 : end + 1) + "\n; ";
            params.insert(params.end(), st.params.begin(), st.params.end());
        }
        sql += "COMMIT; END";
        try {
            return execute(sql, params).affected;
        } catch (const DbUnavailable&) {
            throw;  // the server rolls back a lost session's transaction
        } catch (const DbError&) {
            // The handler has rolled back; make sure of it should the failure lie elsewhere
            // (the session is alive: the server answered with an error).
            try {
                if (db_) executeDirect("ROLLBACK");
            } catch (...) {
            }
            throw;
        }
    }

    bool oneRoundTripTransactions() override {
        handle();
        return compound_;
    }

    SqlResult executeOnce(const std::string& sql, const std::vector<SqlParam>& params) {
        retrySafe_ = false;
        handle();
        preparing_ = true;
        MYSQL_STMT* st = statement(sql);
        preparing_ = false;
        unsigned long expected = mysql_stmt_param_count(st);
        if (expected != params.size())
            throw DbError(prefix() + "statement expects " + std::to_string(expected) +
                          " parameters, got " + std::to_string(params.size()) +
                          " (statement: " + sql + ")");
        try {
            SqlResult r = run(st, params);
            lastUsed_ = Clock::now();
            return r;
        } catch (const Failure& f) {
            failed(f, sql);
        }
    }

    void executeDirect(const std::string& sql) override {
        MYSQL* db = handle();
        if (mysql_real_query(db, sql.data(), sql.size()) != 0)
            failed(Failure(mysql_errno(db), mysql_error(db)), sql);
        // Whatever the statement returned has to be read off the wire before the next command.
        ResultPtr res(mysql_store_result(db));
        if (!res && mysql_field_count(db) != 0)
            failed(Failure(mysql_errno(db), mysql_error(db)), sql);
        lastUsed_ = Clock::now();
    }

    bool tableExists(const std::string& table) override {
        auto r = execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND "
            "table_name = ?",
            {SqlParam::of(table)});
        return !r.rows.empty();
    }

    Dsn::Driver driver() const override { return Dsn::Driver::Mysql; }
    const std::string& name() const override { return settings_.name; }

  private:
    std::string prefix() const { return "database '" + settings_.name + "': "; }
    std::string clean(const std::string& text) const { return scrub(text, settings_.password); }

    // Turns a failed client call into the exception the interface promises, closing the
    // session first when it is gone.
    [[noreturn]] void failed(const Failure& f, const std::string& sql) {
        if (isConnectionError(f.err, f.msg)) {
            retrySafe_ = preparing_ || f.err == kCrServerGoneError;
            preparing_ = false;
            lost(f.msg);
            throw DbUnavailable(clean(prefix() + "connection lost: " + f.msg));
        }
        // A statement that failed is prepared afresh next time: cheap, and it cannot carry
        // state from the failure (or a stale view of a table that has been created since).
        preparing_ = false;
        stmts_.erase(sql);
        lastUsed_ = Clock::now();  // the server answered: the session is alive
        std::string text = clean(prefix() + f.msg + " (statement: " + sql + ")");
        if (f.err == kErNoSuchTable) throw DbNoSuchTable(text);
        throw DbError(text);
    }

    // The session is gone: close it and log the start of the outage (once).
    void lost(const std::string& why) {
        dropHandle();
        if (!down_) {
            MTP_LOG(log::Err, "database '%s': connection lost: %s", settings_.name.c_str(),
                    clean(why).c_str());
            down_ = true;
            haveFailedAttempt_ = false;  // the next call may try to reconnect at once
        }
    }

    void dropHandle() {
        stmts_.clear();
        db_.reset();
    }

    // A handle inherited through fork shares its socket with the parent: closing it normally
    // would send COM_QUIT and end the parent's session. The child closes only its own copy of
    // the descriptor and forgets the (small) client structures.
    void abandon() {
        if (db_) {
            int fd = static_cast<int>(mysql_get_socket(db_.get()));
            if (fd >= 0) ::close(fd);
        }
        for (auto& kv : stmts_) kv.second.release();
        stmts_.clear();
        db_.release();
    }

    // A connected handle, or DbError.
    MYSQL* handle() {
        if (db_ && owner_ != processGeneration()) abandon();
        if (inTransaction_) {
            if (!db_) throw DbUnavailable(prefix() + "connection lost during a transaction");
            return db_.get();
        }
        if (db_) {
            if (Clock::now() - lastUsed_ <= pingAfterIdle_) return db_.get();
            // The server may have closed an idle session (wait_timeout). Nothing has been sent
            // for this call yet, so replacing the handle is safe and not an outage.
            if (mysql_ping(db_.get()) == 0) {
                lastUsed_ = Clock::now();
                return db_.get();
            }
            MTP_LOG(log::Info, "database '%s': idle connection is gone (%s), reconnecting",
                    settings_.name.c_str(), clean(mysql_error(db_.get())).c_str());
            dropHandle();
        }
        if (down_ && haveFailedAttempt_ &&
            Clock::now() - lastFailedAttempt_ < std::chrono::seconds(1))
            throw DbUnavailable("database '" + settings_.name + "' is unavailable");
        connect();
        return db_.get();
    }

    void connect() {
        MysqlPtr m(mysql_init(nullptr));
        if (!m) throw DbError(prefix() + "cannot connect: out of memory");
        auto setTimeout = [&](mysql_option opt, int seconds) {
            unsigned v = static_cast<unsigned>(seconds);
            if (seconds > 0) mysql_options(m.get(), opt, &v);
        };
        setTimeout(MYSQL_OPT_CONNECT_TIMEOUT, settings_.connectTimeout);
        setTimeout(MYSQL_OPT_READ_TIMEOUT, settings_.readTimeout);
        setTimeout(MYSQL_OPT_WRITE_TIMEOUT, settings_.writeTimeout);
        mysql_options(m.get(), MYSQL_SET_CHARSET_NAME, "utf8mb4");
#ifdef MARIADB_PACKAGE_VERSION
        // The library's reconnect would silently drop our prepared statements and could resend
        // a statement; reconnecting is done here. (libmysqlclient has it off by default and
        // deprecates the option.)
        BindBool off = 0;
        mysql_options(m.get(), MYSQL_OPT_RECONNECT, &off);
#endif
        unsigned noLocalInfile = 0;  // nothing here reads client files; do not let a server ask
        mysql_options(m.get(), MYSQL_OPT_LOCAL_INFILE, &noLocalInfile);

        const Dsn& dsn = settings_.dsn;
        const char* host = dsn.host.empty() ? "localhost" : dsn.host.c_str();
        const char* user = settings_.user.empty() ? nullptr : settings_.user.c_str();
        const char* socket = dsn.socket.empty() ? nullptr : dsn.socket.c_str();
        // CLIENT_FOUND_ROWS: an UPDATE reports the rows it matched, not only those whose value
        // changed. DBD::mysql (and so mtpolicyd) has done this by default since 2003, and it is
        // what SQLite's sqlite3_changes() reports too.
        bool ok = mysql_real_connect(m.get(), host, user, settings_.password.c_str(),
                                     dsn.database.c_str(), dsn.port, socket, CLIENT_FOUND_ROWS) &&
                  mysql_autocommit(m.get(), 1) == 0;
        if (!ok) {
            std::string why = clean(mysql_error(m.get()));
            if (!down_) {
                if (everConnected_)
                    MTP_LOG(log::Err, "database '%s': connection lost: %s", settings_.name.c_str(),
                            why.c_str());
                else
                    MTP_LOG(log::Err, "database '%s': cannot connect: %s", settings_.name.c_str(),
                            why.c_str());
                down_ = true;
            }
            haveFailedAttempt_ = true;
            lastFailedAttempt_ = Clock::now();
            throw DbUnavailable(prefix() + "cannot connect: " + why);
        }
        db_ = std::move(m);
        // MariaDB 10.1.1 added anonymous compound statements (BEGIN NOT ATOMIC ... END).
        const char* server = mysql_get_server_info(db_.get());
        compound_ = allowCompound_ && server && std::strstr(server, "MariaDB") &&
                    mysql_get_server_version(db_.get()) >= 100101;
        owner_ = processGeneration();
        lastUsed_ = Clock::now();
        if (down_)
            MTP_LOG(log::Notice, "database '%s': connection re-established",
                    settings_.name.c_str());
        down_ = false;
        haveFailedAttempt_ = false;
        everConnected_ = true;
    }

    // The cached prepared statement for `sql`, preparing it on first use.
    MYSQL_STMT* statement(const std::string& sql) {
        auto it = stmts_.find(sql);
        if (it != stmts_.end()) return it->second.get();
        StmtPtr st(mysql_stmt_init(db_.get()));
        if (!st) failed(Failure(mysql_errno(db_.get()), mysql_error(db_.get())), sql);
        // Have mysql_stmt_store_result compute each column's longest value, to size buffers.
        BindBool on = 1;
        mysql_stmt_attr_set(st.get(), STMT_ATTR_UPDATE_MAX_LENGTH, &on);
        if (mysql_stmt_prepare(st.get(), sql.data(), sql.size()) != 0) {
            Failure f = stmtFailure(st.get());
            st.reset();
            failed(f, sql);
        }
        MYSQL_STMT* out = st.get();
        stmts_.emplace(sql, std::move(st));
        return out;
    }

    // Binds, executes and fetches; throws Failure (never a DbError) so that execute() can
    // clean up once the raw pointers here are out of use.
    static SqlResult run(MYSQL_STMT* st, const std::vector<SqlParam>& params) {
        std::vector<MYSQL_BIND> in(params.size());
        std::vector<unsigned long> inLength(params.size());
        // Not std::vector: with libmysqlclient BindBool is bool, and vector<bool> has no
        // addressable elements.
        auto inNull = std::make_unique<BindBool[]>(params.size());
        for (size_t i = 0; i < params.size(); ++i) {
            MYSQL_BIND& b = in[i];
            std::memset(&b, 0, sizeof b);
            const SqlParam& p = params[i];
            switch (p.kind) {
                case SqlParam::Kind::Null:
                    b.buffer_type = MYSQL_TYPE_NULL;
                    inNull[i] = 1;
                    b.is_null = &inNull[i];
                    break;
                case SqlParam::Kind::Integer:
                    b.buffer_type = MYSQL_TYPE_LONGLONG;
                    b.buffer = const_cast<long long*>(&p.integer);
                    break;
                case SqlParam::Kind::Text:
                    b.buffer_type = MYSQL_TYPE_STRING;
                    b.buffer = const_cast<char*>(p.text.data());
                    b.buffer_length = p.text.size();
                    inLength[i] = p.text.size();
                    b.length = &inLength[i];
                    break;
            }
        }
        if (!in.empty() && mysql_stmt_bind_param(st, in.data()) != 0) throw stmtFailure(st);
        if (mysql_stmt_execute(st) != 0) throw stmtFailure(st);
        FreeResultGuard freeResult(st);

        SqlResult result;
        unsigned cols = mysql_stmt_field_count(st);
        if (cols == 0) {
            result.affected = mysql_stmt_affected_rows(st);
            drainResults(st, result);
            return result;
        }
        if (mysql_stmt_store_result(st) != 0) throw stmtFailure(st);
        ResultPtr meta(mysql_stmt_result_metadata(st));
        if (!meta) throw stmtFailure(st);
        MYSQL_FIELD* fields = mysql_fetch_fields(meta.get());

        // Every column is fetched as text, into a buffer sized from the longest value.
        std::vector<std::vector<char>> buf(cols);
        std::vector<MYSQL_BIND> out(cols);
        std::vector<unsigned long> outLength(cols);
        auto outNull = std::make_unique<BindBool[]>(cols);
        auto outError = std::make_unique<BindBool[]>(cols);
        for (unsigned c = 0; c < cols; ++c) {
            buf[c].resize(std::max<unsigned long>(fields[c].max_length, kMinColumnBuffer) + 1);
            MYSQL_BIND& b = out[c];
            std::memset(&b, 0, sizeof b);
            b.buffer_type = MYSQL_TYPE_STRING;
            b.buffer = buf[c].data();
            b.buffer_length = buf[c].size();
            b.length = &outLength[c];
            b.is_null = &outNull[c];
            b.error = &outError[c];
        }
        if (mysql_stmt_bind_result(st, out.data()) != 0) throw stmtFailure(st);
        for (;;) {
            int rc = mysql_stmt_fetch(st);
            if (rc == MYSQL_NO_DATA) break;
            if (rc == 1) throw stmtFailure(st);
            SqlRow row(cols);
            for (unsigned c = 0; c < cols; ++c) {
                if (outNull[c]) continue;  // stays nullopt
                if (outLength[c] <= out[c].buffer_length) {
                    row[c] = std::string(buf[c].data(), outLength[c]);
                    continue;
                }
                // Longer than max_length promised (a type converted to text): fetch it whole.
                std::string value(outLength[c], '\0');
                unsigned long length = 0;
                MYSQL_BIND b;
                std::memset(&b, 0, sizeof b);
                b.buffer_type = MYSQL_TYPE_STRING;
                b.buffer = value.data();
                b.buffer_length = value.size();
                b.length = &length;
                if (mysql_stmt_fetch_column(st, &b, c, 0) != 0) throw stmtFailure(st);
                value.resize(std::min<unsigned long>(length, value.size()));
                row[c] = std::move(value);
            }
            result.rows.push_back(std::move(row));
        }
        drainResults(st, result);
        return result;
    }

    // A CALL or a compound statement can send more results after the first (a result set per
    // SELECT inside, then the final status). They are read off the wire here, or the session
    // would be out of step for the next command; only the first result set's rows are kept,
    // and `affected` is that of the final status.
    static void drainResults(MYSQL_STMT* st, SqlResult& result) {
        while (mysql_stmt_more_results(st)) {
            mysql_stmt_free_result(st);
            int rc = mysql_stmt_next_result(st);
            if (rc > 0) throw stmtFailure(st);
            if (rc < 0) break;
            if (mysql_stmt_field_count(st) == 0) {
                result.affected = mysql_stmt_affected_rows(st);
            } else if (mysql_stmt_store_result(st) != 0) {
                throw stmtFailure(st);
            }
        }
    }

    bool retrySafe_ = false;  // the last failure happened before the statement reached the server
    bool preparing_ = false;
    SqlSettings settings_;
    std::chrono::milliseconds pingAfterIdle_;
    unsigned owner_ = 0;  // processGeneration() when db_ was connected
    bool inTransaction_ = false;
    bool allowCompound_;
    bool compound_ = false;  // the server runs BEGIN NOT ATOMIC ... END (MariaDB)
    MysqlPtr db_;
    // Declared after db_ so that the statements are closed before their handle.
    std::unordered_map<std::string, StmtPtr> stmts_;
    bool down_ = false;           // an outage is in progress; it was logged when it began
    bool everConnected_ = false;  // "cannot connect" before the first success, "lost" after
    bool haveFailedAttempt_ = false;
    Clock::time_point lastFailedAttempt_;
    Clock::time_point lastUsed_;
};

}  // namespace

std::unique_ptr<SqlConnection> makeMysqlConnection(const SqlSettings& settings,
                                                   std::chrono::milliseconds pingAfterIdle, bool compound) {
    // Initialise the client library (and the TLS library it starts) once, here in the master
    // while it reads the configuration: every worker inherits it at fork instead of paying
    // for it (time and about 2 MB of resident memory each) on its first query.
    static const bool initialised = mysql_library_init(0, nullptr, nullptr) == 0;
    if (!initialised) throw DbError("database '" + settings.name + "': cannot initialise the MySQL client library");
    return std::make_unique<MysqlConnection>(settings, pingAfterIdle, compound);
}

}  // namespace sqldetail
}  // namespace mtp
