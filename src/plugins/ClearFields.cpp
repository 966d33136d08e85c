// ClearFields: deletes session variables by name and by literal prefix.
#include "mtpolicyd/plugins/Plugins.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace plugins {
namespace {

class ClearFields : public Plugin {
public:
    explicit ClearFields(PluginContext& ctx)
        : Plugin(ctx), fields_(ctx.opts.list("fields")), prefixes_(ctx.opts.list("fields_prefix")) {}

    void run(Request& r) override {
        Session& s = r.sess();
        for (const auto& f : fields_) s.erase(f);
        if (prefixes_.empty()) return;
        for (auto it = s.vars.begin(); it != s.vars.end();) {
            bool hit = false;
            for (const auto& p : prefixes_)
                if (startsWith(it->first, p)) hit = true;
            it = hit ? s.vars.erase(it) : std::next(it);
        }
    }

private:
    std::vector<std::string> fields_, prefixes_;
};

}  // namespace

PluginSpec clearFieldsSpec() {
    return {"ClearFields",
            "Delete session variables.",
            {optional("fields", SettingType::List, "Session variables to delete (list or comma-separated)."),
             optional("fields_prefix", SettingType::List,
                      "Delete every session variable starting with one of these prefixes.")},
            false,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new ClearFields(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
