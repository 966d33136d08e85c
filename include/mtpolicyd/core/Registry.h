// The explicit table of plugin modules. There is no static self-registration: adding a
// plugin means adding one line to the table in Registry.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mtpolicyd/core/Plugin.h"

namespace mtp {

struct PluginSpec {
    std::string module;
    std::string summary;
    SettingTable settings;  // module-specific settings (common ones are added by the registry)
    bool nested = false;    // takes `plugins = ( ... )`
    std::function<std::unique_ptr<Plugin>(PluginContext&)> make;
};

const std::vector<PluginSpec>& pluginSpecs();
const PluginSpec* findPluginSpec(const std::string& module);
// name, module, on_error, log_level: accepted by every plugin.
const SettingTable& commonPluginSettings();

// Builds one plugin (validating its block and nested chain) or a whole chain from a
// `plugins = ( ... )` list. Throws ConfigError naming file, line and key.
std::unique_ptr<Plugin> buildPlugin(const ConfNode& block, const Config* config);
void buildChain(const ConfNode& list, const Config* config, Chain& out, const std::string& context);

}  // namespace mtp
