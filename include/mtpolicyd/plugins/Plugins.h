// The specs (settings table + factory) of every plugin module, one function per module.
// Registry.cpp lists them explicitly.
#pragma once

#include "mtpolicyd/core/Registry.h"

namespace mtp {
namespace plugins {

PluginSpec actionSpec();
PluginSpec setFieldSpec();
PluginSpec clearFieldsSpec();
PluginSpec conditionSpec();
PluginSpec scoreActionSpec();
PluginSpec addScoreHeaderSpec();
PluginSpec accountingSpec();
PluginSpec quotaSpec();
PluginSpec sqlUserConfigSpec();

}  // namespace plugins
}  // namespace mtp
