// The plugin table and the builders that turn configuration blocks into plugin chains.
#include "mtpolicyd/core/Registry.h"

#include "mtpolicyd/plugins/Plugins.h"
#include "mtpolicyd/util/Errors.h"

namespace mtp {

const std::vector<PluginSpec>& pluginSpecs() {
    static const std::vector<PluginSpec> table = {
        plugins::actionSpec(),
        plugins::setFieldSpec(),
        plugins::clearFieldsSpec(),
        plugins::conditionSpec(),
        plugins::scoreActionSpec(),
        plugins::addScoreHeaderSpec(),
        plugins::accountingSpec(),
        plugins::quotaSpec(),
        plugins::sqlUserConfigSpec(),
    };
    return table;
}

const PluginSpec* findPluginSpec(const std::string& module) {
    for (const auto& s : pluginSpecs())
        if (s.module == module) return &s;
    return nullptr;
}

const SettingTable& commonPluginSettings() {
    static const SettingTable t = {
        required("name", SettingType::String, "Name of the plugin, used in logs and session keys."),
        required("module", SettingType::String, "The plugin module, e.g. \"Action\" or \"Condition\"."),
        withDefault("on_error", SettingType::String, "fail",
                    "\"fail\": an error fails the whole request (no reply, Postfix applies its "
                    "default_action); \"continue\": log the error and go on with the next plugin."),
        ranged(withDefault("log_level", SettingType::Integer, "4",
                           "Level (0-4) at which the plugin's own messages are logged."),
               0, 4),
    };
    return t;
}

std::unique_ptr<Plugin> buildPlugin(const ConfNode& block, const Config* config) {
    if (block.kind != ConfNode::Kind::Group)
        throw ConfigError(block.where() + ": a plugin must be a group { name = ...; module = ...; }");
    const ConfNode* nameNode = block.child("name");
    std::string name = nameNode && nameNode->kind == ConfNode::Kind::Scalar ? nameNode->value : "";
    std::string context = name.empty() ? "plugin" : "plugin '" + name + "'";
    const ConfNode* moduleNode = block.child("module");
    if (!moduleNode || moduleNode->kind != ConfNode::Kind::Scalar)
        throw ConfigError(block.where() + ": " + context + ": missing required key 'module'");
    const PluginSpec* spec = findPluginSpec(moduleNode->value);
    if (!spec) {
        std::string known;
        for (const auto& s : pluginSpecs()) known += (known.empty() ? "" : ", ") + s.module;
        throw ConfigError(moduleNode->where() + ": " + context + ": key 'module': unknown plugin module '" +
                          moduleNode->value + "' (available: " + known + ")");
    }
    Options opts = Options::apply(block, {&commonPluginSettings(), &spec->settings}, context,
                                  spec->nested ? std::vector<std::string>{"plugins"} : std::vector<std::string>{});
    const std::string& onError = opts.str("on_error");
    if (onError != "fail" && onError != "continue")
        throw ConfigError(opts.whereOf("on_error") + ": " + context +
                          ": key 'on_error': expected \"fail\" or \"continue\", got \"" + onError + "\"");
    PluginContext ctx{opts, opts.str("name"), spec->module, nullptr, config};
    if (spec->nested) {
        if (const ConfNode* list = block.child("plugins")) {
            ctx.nested = std::make_unique<Chain>();
            buildChain(*list, config, *ctx.nested, context);
        }
    }
    try {
        return spec->make(ctx);
    } catch (const ConfigError&) {
        throw;
    } catch (const std::exception& e) {
        throw ConfigError(block.where() + ": " + context + ": " + e.what());
    }
}

void buildChain(const ConfNode& list, const Config* config, Chain& out, const std::string& context) {
    if (list.kind != ConfNode::Kind::List)
        throw ConfigError(list.where() + ": " + context + ": key 'plugins': expected a list ( { ... }, ... )");
    if (list.children.empty())
        throw ConfigError(list.where() + ": " + context + ": key 'plugins': the list is empty");
    for (const auto& block : list.children) out.plugins.push_back(buildPlugin(block, config));
}

}  // namespace mtp
