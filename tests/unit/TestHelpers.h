// Helpers shared by the unit tests: a configuration with one virtual host built from
// plugin blocks given as libconfig text.
#pragma once

#include <memory>
#include <string>

#include "mtpolicyd/core/Config.h"

namespace testhelpers {

// A virtual host "t" on port 12345 with the given plugin blocks.
inline std::unique_ptr<mtp::Config> chainConfig(const std::string& plugins) {
    std::string text = "virtual_hosts = ( { name = \"t\"; port = \"12345\";\n plugins = (\n" + plugins +
                       "\n); } );\n";
    return mtp::Config::fromTree(mtp::readLibconfigString(text, "test.conf"), "test.conf");
}

}  // namespace testhelpers
