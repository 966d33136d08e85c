// The SQLite driver. A SqliteConnection owns one sqlite3* (opened lazily, in the process that
// uses it) and a cache of prepared statements keyed by SQL text; the statements are finalized
// before the handle is closed. Several workers open the same file, so the database runs in WAL
// mode with a busy timeout: writers queue for the lock instead of failing with "database is
// locked".
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <unordered_map>

#include "Drivers.h"
#include "mtpolicyd/util/Log.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace sqldetail {

namespace {

struct DbCloser {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
    void operator()(sqlite3_stmt* st) const noexcept { sqlite3_finalize(st); }
};
struct SqliteFree {
    void operator()(char* p) const noexcept { sqlite3_free(p); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;
using SqliteString = std::unique_ptr<char, SqliteFree>;

// Leaves a cached statement ready for its next use whatever happened while it ran.
class ResetGuard {
  public:
    explicit ResetGuard(sqlite3_stmt* st) : st_(st) {}
    ~ResetGuard() {
        sqlite3_reset(st_);
        sqlite3_clear_bindings(st_);
    }
    ResetGuard(const ResetGuard&) = delete;
    ResetGuard& operator=(const ResetGuard&) = delete;

  private:
    sqlite3_stmt* st_;
};

class SqliteConnection final : public SqlConnection {
  public:
    explicit SqliteConnection(const SqlSettings& settings) : settings_(settings) {}

    ~SqliteConnection() override {
        // A handle inherited through fork belongs to the parent; SQLite forbids using (or
        // closing) it in the child, so the child only forgets it.
        if (db_ && owner_ != processGeneration()) abandon();
    }

    SqlResult execute(const std::string& sql, const std::vector<SqlParam>& params) override {
        sqlite3* db = handle();
        sqlite3_stmt* st = statement(db, sql);
        ResetGuard reset(st);

        int expected = sqlite3_bind_parameter_count(st);
        if (expected != static_cast<int>(params.size()))
            throw DbError(prefix() + "statement expects " + std::to_string(expected) +
                          " parameters, got " + std::to_string(params.size()) +
                          " (statement: " + sql + ")");
        for (size_t i = 0; i < params.size(); ++i) {
            const SqlParam& p = params[i];
            int idx = static_cast<int>(i) + 1, rc = SQLITE_OK;
            switch (p.kind) {
                case SqlParam::Kind::Null:
                    rc = sqlite3_bind_null(st, idx);
                    break;
                case SqlParam::Kind::Integer:
                    rc = sqlite3_bind_int64(st, idx, p.integer);
                    break;
                case SqlParam::Kind::Text:
                    // SQLITE_STATIC: `params` outlives the statement's use in this call.
                    rc = sqlite3_bind_text64(st, idx, p.text.data(), p.text.size(), SQLITE_STATIC,
                                             SQLITE_UTF8);
                    break;
            }
            if (rc != SQLITE_OK) fail(db, sql);
        }

        SqlResult result;
        int before = sqlite3_total_changes(db);
        int cols = sqlite3_column_count(st);
        for (;;) {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) fail(db, sql);
            SqlRow row(cols);
            for (int c = 0; c < cols; ++c) {
                if (sqlite3_column_type(st, c) == SQLITE_NULL) continue;  // stays nullopt
                // column_text before column_bytes: the byte count is that of the text form.
                const unsigned char* text = sqlite3_column_text(st, c);
                int bytes = sqlite3_column_bytes(st, c);
                row[c] = std::string(reinterpret_cast<const char*>(text), bytes);
            }
            result.rows.push_back(std::move(row));
        }
        // sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE, so it would report
        // a stale number after a SELECT or CREATE; count only when this statement changed rows.
        if (!sqlite3_stmt_readonly(st) && sqlite3_total_changes(db) != before)
            result.affected = static_cast<uint64_t>(sqlite3_changes(db));
        return result;
    }

    void begin() override { executeDirect("BEGIN IMMEDIATE"); }
    void commit() override { executeDirect("COMMIT"); }
    void rollback() noexcept override {
        if (!db_ || sqlite3_get_autocommit(db_.get())) return;  // no transaction open
        sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }

    void executeDirect(const std::string& sql) override {
        sqlite3* db = handle();
        char* raw = nullptr;
        int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &raw);
        SqliteString err(raw);
        if (rc != SQLITE_OK) raise(err ? err.get() : sqlite3_errmsg(db), sql);
    }

    bool tableExists(const std::string& table) override {
        // COLLATE NOCASE: SQLite resolves table names case-insensitively, so "Foo" exists when
        // "foo" does and CREATE TABLE Foo would fail.
        auto r = execute(
            "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ? COLLATE "
            "NOCASE",
            {SqlParam::of(table)});
        return !r.rows.empty();
    }

    Dsn::Driver driver() const override { return Dsn::Driver::Sqlite; }
    const std::string& name() const override { return settings_.name; }

  private:
    std::string prefix() const { return "database '" + settings_.name + "': "; }

    [[noreturn]] void fail(sqlite3* db, const std::string& sql) { raise(sqlite3_errmsg(db), sql); }

    [[noreturn]] void raise(const std::string& msg, const std::string& sql) {
        std::string text = scrub(prefix() + msg + " (statement: " + sql + ")", settings_.password);
        // SQLITE_ERROR covers every kind of SQL error; only the text tells a missing table.
        if (startsWith(msg, "no such table")) throw DbNoSuchTable(text);
        throw DbError(text);
    }

    void abandon() {
        for (auto& kv : stmts_) kv.second.release();
        stmts_.clear();
        db_.release();
    }

    sqlite3* handle() {
        if (db_ && owner_ != processGeneration()) abandon();
        if (!db_) open();
        return db_.get();
    }

    void open() {
        const std::string& path = settings_.dsn.path;
        sqlite3* raw = nullptr;
        int rc = sqlite3_open_v2(path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
        DbPtr db(raw);  // sqlite3_open_v2 hands out a handle even on failure; it must be closed
        if (rc == SQLITE_OK) {
            int busyMs = std::max(settings_.writeTimeout * 1000, 5000);
            sqlite3_busy_timeout(db.get(), busyMs);
            rc = setUp(db.get());
        }
        if (rc != SQLITE_OK) {
            std::string why =
                scrub(db ? sqlite3_errmsg(db.get()) : "out of memory", settings_.password);
            if (!failing_) {
                MTP_LOG(log::Err, "database '%s': cannot open %s: %s", settings_.name.c_str(),
                        path.c_str(), why.c_str());
                failing_ = true;
            }
            throw DbUnavailable(prefix() + "cannot open " + path + ": " + why);
        }
        if (failing_) {
            MTP_LOG(log::Notice, "database '%s': connection re-established",
                    settings_.name.c_str());
            failing_ = false;
        }
        db_ = std::move(db);
        owner_ = processGeneration();
    }

    // Per-handle settings. WAL lets readers run while one worker writes; synchronous=NORMAL is
    // safe with WAL (a power loss can lose the last commits, never corrupt the file) and spares
    // an fsync per counter update.
    static int setUp(sqlite3* db) {
        const char* file = sqlite3_db_filename(db, "main");
        if (!file || !*file)
            return SQLITE_OK;  // :memory: (or a temporary database): nothing to tune
        int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
        return rc;
    }

    sqlite3_stmt* statement(sqlite3* db, const std::string& sql) {
        auto it = stmts_.find(sql);
        if (it != stmts_.end()) return it->second.get();
        sqlite3_stmt* raw = nullptr;
        const char* tail = nullptr;
        int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()) + 1,
                                    SQLITE_PREPARE_PERSISTENT, &raw, &tail);
        StmtPtr st(raw);
        if (rc != SQLITE_OK) fail(db, sql);
        if (!st) throw DbError(prefix() + "empty statement");
        // sqlite3_prepare compiles only the first statement; silently dropping the rest would
        // hide a mistake. A tail of blanks, ';' or comments compiles to nothing and is fine.
        if (tail && *tail) {
            sqlite3_stmt* next = nullptr;
            sqlite3_prepare_v2(db, tail, -1, &next, nullptr);
            StmtPtr second(next);
            if (second)
                throw DbError(prefix() + "more than one statement (statement: " + sql + ")");
        }
        sqlite3_stmt* out = st.get();
        stmts_.emplace(sql, std::move(st));
        return out;
    }

    SqlSettings settings_;
    unsigned owner_ = 0;  // processGeneration() when db_ was opened
    DbPtr db_;
    // Declared after db_ so that the statements are finalized before the handle closes.
    std::unordered_map<std::string, StmtPtr> stmts_;
    bool failing_ = false;  // an open failure has been logged and no open succeeded since
};

}  // namespace

std::unique_ptr<SqlConnection> makeSqliteConnection(const SqlSettings& settings) {
    return std::make_unique<SqliteConnection>(settings);
}

}  // namespace sqldetail
}  // namespace mtp
