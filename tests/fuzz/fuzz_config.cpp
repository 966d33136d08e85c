// libFuzzer target: the native configuration reader (libconfig -> ConfNode tree,
// mtp::readLibconfigString) and the validation that builds a Config from it
// (mtp::Config::fromTree: global settings, connections, virtual hosts, every plugin's settings).
// Config::load(path) is readLibconfigFile + fromTree; the string reader differs only in how
// the text arrives and in @include handling, so this target uses it and skips @include
// (which would open files named by the input).
//
// Checks:
//   - no crash / sanitizer report; the only exception is ConfigError (a bad config must be
//     reported, never crash the daemon or escape as another exception type), and its message
//     is not empty;
//   - every node of the tree has a line number and, if it is a scalar, no children;
//   - a configuration that loads prints (Config::dump) a configuration that loads again and
//     prints the same text (what `mtpolicyd -t -v`-style dumping promises: the effective
//     configuration, re-usable as a config file).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <sstream>
#include <typeinfo>
#include <string>

#include "mtpolicyd/core/ConfNode.h"
#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

namespace {

const char* const kFile = "/etc/mtpolicyd/mtpolicyd.conf";

[[noreturn]] void fail(const char* what, const std::string& detail = "") {
    std::fprintf(stderr, "fuzz_config: invariant violated: %s\n%s\n", what, detail.c_str());
    std::abort();
}
#define CHECK(cond)               \
    do {                          \
        if (!(cond)) fail(#cond); \
    } while (0)

void checkTree(const mtp::ConfNode& n, int depth) {
    CHECK(n.line > 0);
    if (n.kind == mtp::ConfNode::Kind::Scalar) CHECK(n.children.empty());
    if (depth > 0 && n.kind != mtp::ConfNode::Kind::Scalar) {
        // Group members are named, list elements are not.
        for (const auto& c : n.children) {
            if (n.kind == mtp::ConfNode::Kind::Group) CHECK(!c.name.empty());
            else CHECK(c.name.empty());
        }
    }
    for (const auto& c : n.children) checkTree(c, depth + 1);
}

// Reads and validates; returns nullptr after a ConfigError. Any other exception is a finding.
std::unique_ptr<mtp::Config> load(const std::string& text, const char* stage) {
    try {
        mtp::ConfNode root = mtp::readLibconfigString(text, kFile);
        checkTree(root, 0);
        return mtp::Config::fromTree(root, kFile);
    } catch (const mtp::ConfigError& e) {
        if (std::string(e.what()).empty()) fail("ConfigError without a message", stage);
        return nullptr;
    } catch (const std::exception& e) {
        fail("exception other than ConfigError", std::string(stage) + ": " + typeid(e).name() + ": " + e.what());
    } catch (...) {
        fail("unknown exception", stage);
    }
}

std::string dump(const mtp::Config& c) {
    std::ostringstream os;
    c.dump(os);
    return os.str();
}

bool hasInclude(const std::string& s) {
    for (size_t i = s.find('@'); i != std::string::npos; i = s.find('@', i + 1)) {
        size_t j = i + 1;
        while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
        if (j < s.size() && (s[j] == 'i' || s[j] == 'I')) return true;
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
    std::unique_ptr<mtp::Config> c = load(text, "first load");
    if (!c) return 0;
    (void)c->warnings();
    CHECK(!c->listen.empty());
    CHECK(!c->vhosts.empty());
    for (const auto& v : c->vhosts) CHECK(c->vhostForKey(v->port) == v.get());
    std::string first = dump(*c);
    std::unique_ptr<mtp::Config> again = load(first, "reload of the dump");
    if (!again) {
        // Say why, with the dump that did not load.
        try {
            mtp::Config::fromTree(mtp::readLibconfigString(first, kFile), kFile);
        } catch (const std::exception& e) {
            fail("the dump of a valid configuration does not load", std::string(e.what()) + "\n--- dump:\n" + first);
        }
    }
    std::string second = dump(*again);
    if (second != first) fail("dump is not stable", "--- first:\n" + first + "\n--- second:\n" + second);
    return 0;
}
