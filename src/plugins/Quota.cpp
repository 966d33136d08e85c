// Quota: reads the current bucket of an acct_<field> table (written by Accounting) and
// returns its action when the chosen metric has reached the threshold (>=). A blank field
// skips the check; a missing row or table counts as 0. Every option may be overridden per
// request through uc_<option> (e.g. a per-client limit loaded by SqlUserConfig). A value longer
// than the key column is looked up under the same shortened key Accounting stores it under.
#include <ctime>

#include "AccountingTables.h"
#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/plugins/Plugins.h"

namespace mtp {
namespace plugins {
namespace {

class Quota : public Plugin {
public:
    explicit Quota(PluginContext& ctx)
        : Plugin(ctx),
          enabled_(ctx.opts),
          field_(ctx.opts, "field"),
          metric_(ctx.opts, "metric"),
          threshold_(ctx.opts, "threshold"),
          action_(ctx.opts, "action"),
          actionSet_(ctx.opts.isSet("action") || !ctx.opts.ucKey("action").empty()),
          timePattern_(ctx.opts.str("time_pattern")),
          prefix_(ctx.opts.str("table_prefix")),
          db_(&ctx.config->sqlConnection(ctx.opts.str("db"), ctx.opts.whereOf("db"), "db")) {
        auto fail = [&](const std::string& key, const std::string& msg) {
            throw ConfigError(ctx.opts.whereOf(key) + ": plugin '" + name_ + "': key '" + key + "': " + msg);
        };
        if (!isAccountingMetric(ctx.opts.str("metric")))
            fail("metric", "expected count, count_rcpt, size or size_rcpt, got \"" + ctx.opts.str("metric") + "\"");
        if (!isSafeIdentifier(prefix_ + ctx.opts.str("field")))
            fail("field", "table name '" + prefix_ + ctx.opts.str("field") + "' must match [A-Za-z0-9_]+");
        defaultField_ = ctx.opts.str("field");
        defaultMetric_ = ctx.opts.str("metric");
        defaultSql_ = selectSql(prefix_ + defaultField_, defaultMetric_);
    }

    static std::string selectSql(const std::string& table, const std::string& metric) {
        return "SELECT `" + metric + "` FROM `" + table + "` WHERE `key` = ? AND `time` = ?";
    }

    void run(Request& r) override {
        if (!enabled_.get(r)) return;
        const std::string& field = field_.get(r);
        const std::string* value = r.attr(field);
        if (!value || trim(*value).empty()) {
            log(r, "field " + field + " is empty in request, skipping quota check");
            return;
        }
        const std::string& metric = metric_.get(r);
        if (!isAccountingMetric(metric))
            throw DbError("metric '" + metric + "' (from uc_metric) is not count, count_rcpt, size or size_rcpt");
        // The key Accounting counts this value under (a long value: shortened, see fitKey).
        const std::string key = accountingKey(*value);
        double counted = 0;
        try {
            // The statement text is built once for the configured field and metric; only a
            // uc_ override builds (and the driver prepares) another one.
            std::string overridden;
            const std::string* sql = &defaultSql_;
            if (field != defaultField_ || metric != defaultMetric_) {
                overridden = selectSql(accountingTable(prefix_, field), metric);  // checks uc_field
                sql = &overridden;
            }
            SqlResult res = db_->execute(*sql, {SqlParam::of(key),
                                                SqlParam::of(formatLocalTime(timePattern_, time(nullptr)))});
            if (!res.rows.empty() && !res.rows[0].empty() && res.rows[0][0]) parseNumber(*res.rows[0][0], counted);
        } catch (const DbNoSuchTable&) {
            counted = 0;  // nothing counted yet
        }
        double threshold = threshold_.get(r);
        if (counted < threshold) return;
        log(r, field + " " + key + ": " + metric + " " + formatNumber(counted) + " >= " + formatNumber(threshold));
        if (!actionSet_ && nested_) {
            runNested(r);
            return;
        }
        r.result.addAction(name_, action_.get(r));
    }

private:
    UcEnabled enabled_;
    UcString field_, metric_;
    UcNumber threshold_;
    UcString action_;
    bool actionSet_;
    std::string timePattern_;
    std::string prefix_;
    SqlConnection* db_;
    std::string defaultField_, defaultMetric_, defaultSql_;
};

}  // namespace

PluginSpec quotaSpec() {
    using T = SettingType;
    return {"Quota",
            "Defer (or act otherwise) when an accounting counter has reached a threshold.",
            {overridable(required("field", T::String, "Request attribute whose counter is checked, e.g. client_address.")),
             overridable(required("metric", T::String, "Counter to check: count, count_rcpt, size or size_rcpt.")),
             overridable(required("threshold", T::Number, "The limit: the action applies when the counter >= threshold.")),
             overridable(withDefault("action", T::String, "defer smtp traffic quota has been exceeded",
                                     "Action returned when the quota is reached.")),
             withDefault("time_pattern", T::String, "%Y-%m", "Time bucket; must match the Accounting plugin's."),
             withDefault("table_prefix", T::String, "acct_", "Prefix of the table names; must match Accounting's."),
             overridable(withDefault("enabled", T::Boolean, "1", "Set to off to disable the plugin.")),
             withDefault("db", T::String, "db", "Name of the SQL connection to use.")},
            true,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new Quota(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
