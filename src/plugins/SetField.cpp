// SetField: sets a session variable (for later plugins and uc_ overrides).
#include "mtpolicyd/plugins/Plugins.h"

namespace mtp {
namespace plugins {
namespace {

class SetField : public Plugin {
public:
    explicit SetField(PluginContext& ctx)
        : Plugin(ctx), key_(ctx.opts.str("key")), value_(ctx.opts.str("value")) {}
    void run(Request& r) override { r.sess().set(key_, value_); }

private:
    std::string key_, value_;
};

}  // namespace

PluginSpec setFieldSpec() {
    return {"SetField",
            "Set a session variable to a fixed value.",
            {required("key", SettingType::String, "Name of the session variable."),
             required("value", SettingType::String, "Value to store.")},
            false,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new SetField(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
