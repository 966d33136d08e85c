// libFuzzer target: the reader of mtpolicyd 2.x configuration files (Config::General syntax,
// mtp::readLegacyString in src/core/LegacyConfig.cpp), the validation that builds a Config
// from its tree (mtp::Config::fromTree), the format detection (mtp::looksLikeLegacyConfig) and
// the conversion to the native format (mtp::formatNativeConfig, mtpolicyd --convert-config).
// Inputs with <<include>> are skipped (they would read files named by the input).
//
// Checks:
//   - no crash / sanitizer report; the only exception is ConfigError, and its message starts
//     with the file name and a line number ("mtpolicyd.conf:12: ...");
//   - every node of the tree has a file and a line; scalars have no children, group members
//     have names and list elements none;
//   - every warning names the file and a line;
//   - a configuration that loads converts to libconfig text (or is refused because a
//     connection name cannot be written in libconfig), the text is detected as libconfig, and
//     it loads to a configuration that dumps identically (the promise of --convert-config).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <sstream>
#include <string>
#include <typeinfo>
#include <vector>

#include "mtpolicyd/core/ConfNode.h"
#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

namespace {

const char* const kFile = "/etc/mtpolicyd/mtpolicyd.conf";

[[noreturn]] void fail(const char* what, const std::string& detail = "") {
    std::fprintf(stderr, "fuzz_legacy_config: invariant violated: %s\n%s\n", what, detail.c_str());
    std::abort();
}
#define CHECK(cond)               \
    do {                          \
        if (!(cond)) fail(#cond); \
    } while (0)

// "<kFile>:<digits>:"
bool namesLine(const std::string& msg) {
    std::string prefix = std::string(kFile) + ":";
    if (msg.compare(0, prefix.size(), prefix) != 0) return false;
    size_t i = prefix.size(), digits = 0;
    while (i < msg.size() && msg[i] >= '0' && msg[i] <= '9') ++i, ++digits;
    return digits > 0 && i < msg.size() && msg[i] == ':';
}

void checkTree(const mtp::ConfNode& n, int depth) {
    CHECK(n.line > 0);
    CHECK(!n.file.empty());
    if (n.kind == mtp::ConfNode::Kind::Scalar) CHECK(n.children.empty());
    if (depth > 0 && n.kind != mtp::ConfNode::Kind::Scalar) {
        for (const auto& c : n.children) {
            if (n.kind == mtp::ConfNode::Kind::Group) CHECK(!c.name.empty());
            else CHECK(c.name.empty());
        }
    }
    for (const auto& c : n.children) checkTree(c, depth + 1);
}

std::string dump(const mtp::Config& c) {
    std::ostringstream os;
    c.dump(os);
    return os.str();
}

bool hasInclude(const std::string& s) {
    for (size_t i = s.find("<<"); i != std::string::npos; i = s.find("<<", i + 1)) {
        std::string w = s.substr(i + 2, 7);
        for (auto& ch : w) ch = static_cast<char>(ch | 0x20);
        if (w == "include") return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    mtp::log::g_level = -1;  // nothing to log
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    if (hasInclude(text)) return -1;  // keep out of the corpus: would read other files
    (void)mtp::looksLikeLegacyConfig(text);

    std::vector<std::string> warnings;
    mtp::ConfNode root;
    std::unique_ptr<mtp::Config> cfg;
    try {
        root = mtp::readLegacyString(text, kFile, &warnings);
        checkTree(root, 0);
        cfg = mtp::Config::fromTree(root, kFile);
    } catch (const mtp::ConfigError& e) {
        if (!namesLine(e.what())) fail("ConfigError without file:line", e.what());
        return 0;
    } catch (const std::exception& e) {
        fail("exception other than ConfigError", std::string(typeid(e).name()) + ": " + e.what());
    } catch (...) {
        fail("unknown exception");
    }
    for (const auto& w : warnings)
        if (!namesLine(w)) fail("warning without file:line", w);
    (void)cfg->warnings();
    CHECK(!cfg->vhosts.empty());

    std::string native;
    try {
        native = mtp::formatNativeConfig(root, kFile, warnings);
    } catch (const mtp::ConfigError& e) {
        std::string msg = e.what();
        if (msg.find("cannot be written in the native format") != std::string::npos && namesLine(msg)) return 0;
        fail("a valid configuration does not convert", msg + "\n--- input:\n" + text);
    } catch (const std::exception& e) {
        fail("conversion: exception other than ConfigError", std::string(typeid(e).name()) + ": " + e.what());
    }
    if (mtp::looksLikeLegacyConfig(native)) fail("the converted text is not detected as libconfig", native);
    std::unique_ptr<mtp::Config> again;
    try {
        again = mtp::Config::fromTree(mtp::readLibconfigString(native, kFile), kFile);
    } catch (const std::exception& e) {
        fail("the converted text does not load", std::string(e.what()) + "\n--- converted:\n" + native);
    }
    std::string a = dump(*cfg), b = dump(*again);
    if (a != b) fail("the converted text loads differently", "--- legacy:\n" + a + "\n--- converted:\n" + b);
    return 0;
}
