// Helpers shared by the unit tests: a configuration with one virtual host built from
// plugin blocks given as libconfig text.
#pragma once

#include <cppunit/extensions/HelperMacros.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/util/Log.h"

namespace testhelpers {

// A virtual host "t" on port 12345 with the given plugin blocks.
inline std::unique_ptr<mtp::Config> chainConfig(const std::string& plugins) {
    std::string text = "virtual_hosts = ( { name = \"t\"; port = \"12345\";\n plugins = (\n" + plugins +
                       "\n); } );\n";
    return mtp::Config::fromTree(mtp::readLibconfigString(text, "test.conf"), "test.conf");
}

// Collects what is logged at `level` or above (into a temp file) while it lives; logging
// goes back to stderr at the previous level afterwards.
struct LogCapture {
    std::string path;
    int savedLevel;
    explicit LogCapture(int level = mtp::log::Warning) : savedLevel(mtp::log::g_level) {
        char tmpl[] = "/tmp/mtpolicyd-unit-log-XXXXXX";
        int fd = mkstemp(tmpl);
        CPPUNIT_ASSERT(fd >= 0);
        ::close(fd);
        path = tmpl;
        mtp::log::toFile(path, "unit-tests");
        mtp::log::g_level = level;
    }
    ~LogCapture() {
        mtp::log::toStderr("unit-tests");
        mtp::log::g_level = savedLevel;
        ::unlink(path.c_str());
    }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;
    std::string text() const {
        std::ifstream in(path);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
};

}  // namespace testhelpers
