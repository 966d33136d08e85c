// SqlUserConfig: loads a JSON object for the request (one row, first column) and stores its
// members as session variables, so later plugins can use them through uc_<option>, e.g.
// {"quota_count": 100000} with Quota's uc_threshold = "quota_count". No row or invalid JSON is
// logged and skipped; a database error fails the request as on_error says.
#include <cjson/cJSON.h>

#include <memory>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/plugins/Plugins.h"
#include "mtpolicyd/plugins/UserConfigJson.h"
#include "mtpolicyd/util/Log.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace plugins {
namespace {

struct JsonDeleter {
    void operator()(cJSON* j) const { cJSON_Delete(j); }
};
using JsonPtr = std::unique_ptr<cJSON, JsonDeleter>;

// Placeholders outside quoted strings.
int countPlaceholders(const std::string& sql) {
    int n = 0;
    char quote = 0;
    for (char c : sql) {
        if (quote) {
            if (c == quote) quote = 0;
        } else if (c == '\'' || c == '"' || c == '`') {
            quote = c;
        } else if (c == '?') {
            ++n;
        }
    }
    return n;
}

class SqlUserConfig : public Plugin {
public:
    explicit SqlUserConfig(PluginContext& ctx)
        : Plugin(ctx),
          query_(ctx.opts.str("sql_query")),
          field_(ctx.opts.str("field")),
          db_(&ctx.config->sqlConnection(ctx.opts.str("db"), ctx.opts.whereOf("db"), "db")) {
        int n = countPlaceholders(query_);
        if (n != 1)
            throw ConfigError(ctx.opts.whereOf("sql_query") + ": plugin '" + name_ +
                              "': key 'sql_query': must contain exactly one ? placeholder, found " + std::to_string(n));
    }

    void run(Request& r) override {
        const std::string* key = r.attr(field_);
        if (!key || trim(*key).empty()) {
            log(r, "unable to retrieve user-config: key field " + field_ + " not defined or empty in request");
            return;
        }
        SqlResult res = db_->execute(query_, {SqlParam::of(*key)});
        if (res.rows.empty() || res.rows[0].empty() || !res.rows[0][0]) {
            log(r, "no user-config found for " + *key);
            return;
        }
        apply(r, *key, *res.rows[0][0]);
    }

    // Stores the members of the JSON object `json` as session variables.
    void apply(Request& r, const std::string& key, const std::string& json) {
        try {
            applyUserConfigJson(json, r.sess());
        } catch (const UserConfigJsonError&) {
            MTP_LOG(log::Warning, "plugin %s: user-config of %s is not a JSON object, ignored", name_.c_str(),
                    log::escape(key).c_str());
        }
    }

private:
    std::string query_;
    std::string field_;
    SqlConnection* db_;
};

}  // namespace

void applyUserConfigJson(const std::string& json, Session& s) {
    JsonPtr root(cJSON_ParseWithLength(json.data(), json.size()));
    if (!root || !cJSON_IsObject(root.get())) throw UserConfigJsonError("user-config is not a JSON object");
    for (cJSON* item = root->child; item; item = item->next) {
        if (!item->string) continue;
        std::string value;
        if (cJSON_IsString(item)) {
            value = item->valuestring ? item->valuestring : "";
        } else if (cJSON_IsNumber(item)) {
            value = formatNumber(item->valuedouble);
        } else if (cJSON_IsBool(item)) {
            value = cJSON_IsTrue(item) ? "1" : "0";
        } else if (cJSON_IsNull(item)) {
            s.erase(item->string);
            continue;
        } else {  // arrays and objects: kept as their JSON text
            char* text = cJSON_PrintUnformatted(item);
            if (text) {
                value = text;
                cJSON_free(text);
            }
        }
        s.set(item->string, value);
    }
}

PluginSpec sqlUserConfigSpec() {
    using T = SettingType;
    return {"SqlUserConfig",
            "Load per-user settings (a JSON object) from SQL into session variables.",
            {withDefault("sql_query", T::String, "SELECT config FROM user_config WHERE address=?",
                         "Query with one ? (bound to the request's field); the first column of the "
                         "first row is a JSON object."),
             withDefault("field", T::String, "recipient", "Request attribute bound to the ?."),
             withDefault("db", T::String, "db", "Name of the SQL connection to use.")},
            false,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new SqlUserConfig(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
