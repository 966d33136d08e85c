// Action: always returns its configured action and stops the chain.
#include "mtpolicyd/plugins/Plugins.h"

namespace mtp {
namespace plugins {
namespace {

class Action : public Plugin {
public:
    explicit Action(PluginContext& ctx) : Plugin(ctx), action_(ctx.opts.str("action")) {}
    void run(Request& r) override { r.result.addAction(name_, action_); }

private:
    std::string action_;
};

}  // namespace

PluginSpec actionSpec() {
    return {"Action",
            "Return a fixed action and stop the chain.",
            {required("action", SettingType::String, "The action to return, e.g. \"reject no thanks\".")},
            false,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new Action(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
