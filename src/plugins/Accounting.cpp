// Accounting: counts messages per field value and time bucket in acct_<field> tables
// (mtpolicyd's accounting how-to). Differences from the Perl original, all on purpose:
// one atomic upsert per field (concurrent workers neither lose nor duplicate counts), 64-bit
// counters in new tables, InnoDB by default, a message counted once per instance, and values
// longer than the key column (255 bytes) stored under a shortened key (fitKey) instead of
// failing the request on MariaDB.
#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <vector>

#include "AccountingTables.h"
#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/plugins/Plugins.h"
#include "mtpolicyd/util/Log.h"

namespace mtp {
namespace plugins {
namespace {

long long attrNumber(const Request& r, const char* name) {
    const std::string* v = r.attr(name);
    long long n = 0;
    if (!v || !parseInteger(*v, n) || n < 0) return 0;
    return n;
}

class Accounting : public Plugin {
public:
    explicit Accounting(PluginContext& ctx)
        : Plugin(ctx),
          enabled_(ctx.opts),
          timePattern_(ctx.opts.str("time_pattern")),
          db_(&ctx.config->sqlConnection(ctx.opts.str("db"), ctx.opts.whereOf("db"), "db")),
          engine_(ctx.opts.str("mysql_engine")),
          doneKey_(name_ + "-acct"),
          dedup_(ctx.opts.boolean("instance_dedup")),
          instanceTable_(ctx.opts.str("instance_table").empty() ? ctx.opts.str("table_prefix") + "instances"
                                                                 : ctx.opts.str("instance_table")),
          retention_(ctx.opts.integer("instance_retention")) {
        if (dedup_ && !isSafeIdentifier(instanceTable_))
            throw ConfigError(ctx.opts.whereOf("instance_table") + ": plugin '" + name_ +
                              "': key 'instance_table': '" + instanceTable_ + "' must match [A-Za-z0-9_]+");
        if (dedup_ && name_.size() > 64)
            throw ConfigError(ctx.opts.whereOf("name") + ": plugin '" + name_ +
                              "': a plugin name of at most 64 characters is needed to record counted instances"
                              " (or set instance_dedup = false)");
        if (!isSafeIdentifier(engine_))
            throw ConfigError(ctx.opts.whereOf("mysql_engine") + ": plugin '" + name_ +
                              "': key 'mysql_engine': must match [A-Za-z0-9_]+");
        for (const auto& f : ctx.opts.list("fields")) {
            Table t;
            t.field = f;
            t.doneKey = doneKey_ + ":" + f;
            try {
                t.name = accountingTable(ctx.opts.str("table_prefix"), f);
            } catch (const DbError& e) {
                throw ConfigError(ctx.opts.whereOf("fields") + ": plugin '" + name_ + "': key 'fields': " + e.what());
            }
            tables_.push_back(t);
        }
        if (tables_.empty())
            throw ConfigError(ctx.opts.whereOf("fields") + ": plugin '" + name_ + "': key 'fields': no field given");
    }

    void run(Request& r) override {
        if (!enabled_.get(r)) return;
        // Once per message. In this worker's session: marked only after the update has
        // succeeded, so a request that failed (database down) and is resent by Postfix with
        // the same instance is counted then. Across workers and restarts (a worker killed
        // after its write but before its answer, the resend reaching another worker): the
        // instance is recorded in the instance table in the same transaction as the counts.
        Session& s = r.sess();
        if (s.get(doneKey_)) {
            log(r, "accounting already done for this mail, skipping");
            return;
        }
        long long rcpt = attrNumber(r, "recipient_count");
        if (rcpt == 0) rcpt = 1;
        long long size = attrNumber(r, "size");
        time_t now = time(nullptr);
        std::string timeKey = formatLocalTime(timePattern_, now);
        Todo todo;
        for (auto& t : tables_) {
            const std::string* value = r.attr(t.field);
            if (!value || trim(*value).empty()) {
                log(r, t.field + " not defined in request, skipping");
                continue;
            }
            if (s.get(t.doneKey)) continue;
            ensureTable(t);  // DDL before any transaction: MySQL commits on CREATE TABLE
            std::string key = accountingKey(*value);
            if (key != *value) warnShortened(t.warnedLong, t.field, *value, kAccountingKeyBytes);
            todo.emplace_back(&t, std::move(key));
        }
        const std::string* instanceAttr = r.attr("instance");
        if (!todo.empty() && dedup_ && instanceAttr && !instanceAttr->empty()) {
            // A longer instance (only a hostile client sends one) is recorded shortened, like a
            // long key: still one row per instance, and the insert cannot fail on its length.
            std::string instance = fitKey(*instanceAttr, kMaxInstance);
            if (instance != *instanceAttr)
                warnShortened(instanceWarned_, "instance", *instanceAttr, kMaxInstance);
            ensureInstanceTable();
            bool counted = countOnce(todo, instance, timeKey, rcpt, size, now);
            if (!counted)
                log(r, "accounting already done for this mail (instance " + instance +
                           " is in " + instanceTable_ + "), skipping");
            for (auto& item : todo) s.set(item.first->doneKey, "1");
            purgeInstances(now);
        } else {
            for (auto& [t, key] : todo) {
                update(*t, key, timeKey, rcpt, size, false);
                s.set(t->doneKey, "1");
            }
        }
        s.set(doneKey_, "1");
    }

private:
    struct Table;
    using Todo = std::vector<std::pair<Table*, std::string>>;  // tables to count in, with their keys

    // Records the instance and counts the message in every table of `todo`, in one
    // transaction; nothing when the instance had already been recorded (returns false).
    bool countOnce(const Todo& todo, const std::string& instance, const std::string& timeKey, long long rcpt,
                   long long size, time_t now) {
        std::vector<SqlParam> instanceParams{SqlParam::of(name_), SqlParam::of(instance),
                                             SqlParam::of(static_cast<long long>(now))};
        if (db_->driver() == Dsn::Driver::Mysql && instanceInnodb_ &&
            std::all_of(todo.begin(), todo.end(), [](const auto& item) { return item.first->innodb; }) &&
            db_->oneRoundTripTransactions()) {
            // One round trip (executeTransaction on MariaDB). The condition is evaluated by
            // the server between the statements: @mtp_counted holds the instance INSERT's
            // ROW_COUNT(), so the counts change only with a new instance row and the total is
            // 0 without one. Only on InnoDB: on MyISAM the compound statement cost mysqld
            // about a third more CPU per message than the statements one by one (measured
            // with mtpolicyd-bench --ceiling-sql), and there is no transaction to keep.
            std::vector<SqlStatement> batch;
            batch.push_back({instanceInsertSql_, std::move(instanceParams)});
            batch.push_back({"SET @mtp_counted = ROW_COUNT()", {}});
            for (const auto& [t, key] : todo)
                batch.push_back({t->guardedUpsertSql, {SqlParam::of(key), SqlParam::of(timeKey), SqlParam::of(rcpt),
                                                       SqlParam::of(size), SqlParam::of(size * rcpt)}});
            return db_->executeTransaction(batch) > 0;
        }
        db_->begin();
        try {
            if (db_->execute(instanceInsertSql_, instanceParams).affected == 0) {
                db_->rollback();
                return false;
            }
            for (const auto& [t, key] : todo) update(*t, key, timeKey, rcpt, size, true);
            db_->commit();
            return true;
        } catch (...) {
            db_->rollback();
            throw;
        }
    }

    struct Table {
        std::string field;
        std::string name;
        std::string doneKey;  // session flag: this table has counted the message
        bool ready = false;
        bool upsert = true;  // false: a Perl-made SQLite table whose duplicates forbid a unique index
        bool warnedLong = false;  // a shortened value has been reported (once per worker)
        bool innodb = false;      // MySQL: the table's engine is InnoDB
        std::string upsertSql, updateSql, insertSql;
        std::string guardedUpsertSql;  // MySQL: upsertSql run only when @mtp_counted > 0
    };

    // Reports (once per worker and field, `warned`) that a value longer than its column (or not
    // valid UTF-8, which a utf8mb4 column refuses) is
    // stored under a shortened key; names the plugin and the field, and shows at most the
    // first 100 bytes of the value.
    void warnShortened(bool& warned, const std::string& field, const std::string& value, size_t maxBytes) {
        if (warned) return;
        warned = true;
        MTP_LOG(log::Warning,
                "plugin %s: %s: a value of %zu bytes is %s, stored under a shortened key (its first "
                "bytes, '~' and a hash of the whole value): \"%s...\" (not reported again by this process)",
                name_.c_str(), field.c_str(), value.size(),
                value.size() > maxBytes ? ("longer than its column (" + std::to_string(maxBytes) + " bytes)").c_str()
                                        : "not valid UTF-8",
                utf8Prefix(value, 100).c_str());
    }

    void ensureTable(Table& t) {
        if (t.ready) return;
        const std::string q = "`" + t.name + "`";
        if (db_->driver() == Dsn::Driver::Mysql) {
            bool myisam = toLower(engine_) == "myisam";
            // Only when missing: an existing table then needs no CREATE privilege.
            if (!db_->tableExists(t.name))
                db_->executeDirect("CREATE TABLE IF NOT EXISTS " + q +
                               " (`id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,"
                               " `key` VARCHAR(255) NOT NULL, `time` VARCHAR(255) NOT NULL,"
                               " `count` BIGINT UNSIGNED NOT NULL DEFAULT 0,"
                               " `count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,"
                               " `size` BIGINT UNSIGNED NOT NULL DEFAULT 0,"
                               " `size_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,"
                               " PRIMARY KEY (`id`), UNIQUE KEY `time_key` (`key`, `time`), KEY (`key`), KEY (`time`)"
                               ") ENGINE=" + engine_ + " DEFAULT CHARSET=" + (myisam ? "latin1" : "utf8mb4"));
            t.innodb = isInnodb(t.name);
            t.upsertSql = "INSERT INTO " + q +
                          " (`key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt`) VALUES (?, ?, 1, ?, ?, ?)"
                          " ON DUPLICATE KEY UPDATE `count` = `count` + 1,"
                          " `count_rcpt` = `count_rcpt` + VALUES(`count_rcpt`),"
                          " `size` = `size` + VALUES(`size`), `size_rcpt` = `size_rcpt` + VALUES(`size_rcpt`)";
            // The same upsert when @mtp_counted > 0: in a batch after the instance INSERT.
            t.guardedUpsertSql = "INSERT INTO " + q +
                                 " (`key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt`)"
                                 " SELECT ?, ?, 1, ?, ?, ? FROM DUAL WHERE @mtp_counted > 0"
                                 " ON DUPLICATE KEY UPDATE `count` = `count` + 1,"
                                 " `count_rcpt` = `count_rcpt` + VALUES(`count_rcpt`),"
                                 " `size` = `size` + VALUES(`size`), `size_rcpt` = `size_rcpt` + VALUES(`size_rcpt`)";
        } else {
            if (!db_->tableExists(t.name)) {
                db_->executeDirect("CREATE TABLE IF NOT EXISTS " + q +
                                   " (`id` INTEGER PRIMARY KEY AUTOINCREMENT,"
                                   " `key` VARCHAR(255) NOT NULL, `time` VARCHAR(255) NOT NULL,"
                                   " `count` INTEGER NOT NULL DEFAULT 0, `count_rcpt` INTEGER NOT NULL DEFAULT 0,"
                                   " `size` INTEGER NOT NULL DEFAULT 0, `size_rcpt` INTEGER NOT NULL DEFAULT 0,"
                                   " UNIQUE (`key`, `time`))");
            } else if (!hasUniqueKeyTime(t.name)) {
                // A table made by the Perl mtpolicyd has no unique (key, time) index.
                try {
                    db_->executeDirect("CREATE UNIQUE INDEX IF NOT EXISTS `" + t.name + "_key_time` ON " + q +
                                       " (`key`, `time`)");
                } catch (const DbError& e) {
                    MTP_LOG(log::Warning,
                            "plugin %s: cannot add a unique (key, time) index to %s (%s); counting with "
                            "UPDATE/INSERT in a transaction instead",
                            name_.c_str(), t.name.c_str(), e.what());
                    t.upsert = false;
                }
            }
            t.upsertSql = "INSERT INTO " + q +
                          " (`key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt`) VALUES (?, ?, 1, ?, ?, ?)"
                          " ON CONFLICT (`key`, `time`) DO UPDATE SET `count` = `count` + 1,"
                          " `count_rcpt` = `count_rcpt` + excluded.`count_rcpt`,"
                          " `size` = `size` + excluded.`size`, `size_rcpt` = `size_rcpt` + excluded.`size_rcpt`";
        }
        t.updateSql = "UPDATE " + q +
                      " SET `count` = `count` + 1, `count_rcpt` = `count_rcpt` + ?, `size` = `size` + ?,"
                      " `size_rcpt` = `size_rcpt` + ? WHERE `key` = ? AND `time` = ?";
        t.insertSql = "INSERT INTO " + q +
                      " (`key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt`) VALUES (?, ?, 1, ?, ?, ?)";
        t.ready = true;
    }

    // MySQL: is the table's storage engine InnoDB?
    bool isInnodb(const std::string& table) {
        SqlResult r = db_->execute(
            "SELECT ENGINE FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
            {SqlParam::of(table)});
        return !r.rows.empty() && !r.rows[0].empty() && r.rows[0][0] && toLower(*r.rows[0][0]) == "innodb";
    }

    // SQLite: does the table (or one of its indexes) already make (key, time) unique?
    bool hasUniqueKeyTime(const std::string& table) {
        SqlResult r = db_->execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL AND "
            "((type = 'table' AND sql LIKE '%UNIQUE%') OR (type = 'index' AND sql LIKE 'CREATE UNIQUE%'))",
            {SqlParam::of(table)});
        for (const auto& row : r.rows) {
            if (row.empty() || !row[0]) continue;
            std::string sql = toLower(*row[0]);
            std::string compact;
            for (char c : sql)
                if (c != ' ' && c != '`' && c != '"' && c != '[' && c != ']') compact += c;
            if (compact.find("(key,time)") != std::string::npos) return true;
        }
        return false;
    }

    // `inTransaction`: the caller has begun a transaction (and commits it).
    void update(const Table& t, const std::string& key, const std::string& timeKey, long long rcpt, long long size,
                bool inTransaction) {
        long long sizeRcpt = size * rcpt;
        if (t.upsert) {
            db_->execute(t.upsertSql, {SqlParam::of(key), SqlParam::of(timeKey), SqlParam::of(rcpt),
                                       SqlParam::of(size), SqlParam::of(sizeRcpt)});
            return;
        }
        if (!inTransaction) db_->begin();
        try {
            SqlResult res = db_->execute(t.updateSql, {SqlParam::of(rcpt), SqlParam::of(size), SqlParam::of(sizeRcpt),
                                                       SqlParam::of(key), SqlParam::of(timeKey)});
            if (res.affected == 0)
                db_->execute(t.insertSql, {SqlParam::of(key), SqlParam::of(timeKey), SqlParam::of(rcpt),
                                           SqlParam::of(size), SqlParam::of(sizeRcpt)});
            if (!inTransaction) db_->commit();
        } catch (...) {
            if (!inTransaction) db_->rollback();
            throw;
        }
    }

    void ensureInstanceTable() {
        if (instanceReady_) return;
        const std::string q = "`" + instanceTable_ + "`";
        bool mysql = db_->driver() == Dsn::Driver::Mysql;
        if (!db_->tableExists(instanceTable_)) {
            if (mysql)
                db_->executeDirect("CREATE TABLE IF NOT EXISTS " + q +
                                   " (`plugin` VARCHAR(64) NOT NULL, `instance` VARCHAR(128) NOT NULL,"
                                   " `time` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`plugin`, `instance`),"
                                   " KEY (`time`)) ENGINE=" + engine_ + " DEFAULT CHARSET=utf8mb4");
            else {
                db_->executeDirect("CREATE TABLE IF NOT EXISTS " + q +
                                   " (`plugin` VARCHAR(64) NOT NULL, `instance` VARCHAR(128) NOT NULL,"
                                   " `time` INTEGER NOT NULL, PRIMARY KEY (`plugin`, `instance`))");
                db_->executeDirect("CREATE INDEX IF NOT EXISTS `" + instanceTable_ + "_time` ON " + q + " (`time`)");
            }
        }
        instanceInnodb_ = mysql && isInnodb(instanceTable_);
        instanceInsertSql_ = std::string(mysql ? "INSERT IGNORE" : "INSERT OR IGNORE") + " INTO " + q +
                             " (`plugin`, `instance`, `time`) VALUES (?, ?, ?)";
        instancePurgeSql_ = "DELETE FROM " + q + " WHERE `time` < ?" + (mysql ? " LIMIT 10000" : "");
        instanceReady_ = true;
    }

    // Forgets instances older than instance_retention, at most once a minute per worker.
    void purgeInstances(time_t now) {
        if (now - lastPurge_ < 60) return;
        lastPurge_ = now;
        try {
            SqlResult res = db_->execute(instancePurgeSql_, {SqlParam::of(static_cast<long long>(now - retention_))});
            if (res.affected)
                MTP_LOG(log::Info, "plugin %s: forgot %llu counted instances older than %lld s", name_.c_str(),
                        static_cast<unsigned long long>(res.affected), static_cast<long long>(retention_));
        } catch (const DbError& e) {
            MTP_LOG(log::Warning, "plugin %s: cannot purge %s: %s", name_.c_str(), instanceTable_.c_str(), e.what());
        }
    }

    UcEnabled enabled_;
    std::string timePattern_;
    SqlConnection* db_;
    std::string engine_;
    std::string doneKey_;  // session flag: the message has been counted (mtpolicyd's <name>-acct)
    std::vector<Table> tables_;
    static constexpr size_t kMaxInstance = 128;  // bytes of `instance`; longer ones are shortened (fitKey)
    bool instanceWarned_ = false;
    bool dedup_;
    std::string instanceTable_;
    long long retention_;
    bool instanceReady_ = false;
    bool instanceInnodb_ = false;
    std::string instanceInsertSql_, instancePurgeSql_;
    time_t lastPurge_ = 0;
};

}  // namespace

PluginSpec accountingSpec() {
    using T = SettingType;
    return {"Accounting",
            "Count messages, recipients and sizes per field value and time bucket in SQL tables.",
            {required("fields", T::List,
                      "Request attributes to count by (list or comma-separated), e.g. \"client_address, "
                      "sasl_username\"; one table <table_prefix><field> each."),
             withDefault("time_pattern", T::String, "%Y-%m",
                         "strftime(3) pattern of the time bucket, in local time (\"%Y-%m\": per month)."),
             withDefault("table_prefix", T::String, "acct_", "Prefix of the table names."),
             overridable(withDefault("enabled", T::Boolean, "1", "Set to off to disable the plugin.")),
             withDefault("db", T::String, "db", "Name of the SQL connection to use."),
             withDefault("mysql_engine", T::String, "InnoDB",
                         "Storage engine of tables created on MySQL/MariaDB (mtpolicyd used MyISAM)."),
             withDefault("instance_dedup", T::Boolean, "1",
                         "Record each counted instance in instance_table in the same transaction as the "
                         "counts, so that a message resent after a worker crash is never counted twice."),
             withDefault("instance_table", T::String, "",
                         "Table of counted instances (default: <table_prefix>instances)."),
             ranged(withDefault("instance_retention", T::Integer, "86400",
                                "Seconds a counted instance is remembered."), 60, 315360000)},
            false,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new Accounting(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
