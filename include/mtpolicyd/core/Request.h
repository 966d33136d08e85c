// One policy request: the attributes Postfix sent, the session of its instance, and the
// results the chain produced. It lives outside the event loop's stack (owned by the
// connection) so that an asynchronous plugin can later suspend and resume it.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "mtpolicyd/core/Session.h"

namespace mtp {

class VirtualHost;

// What the chain produced: the actions in order, whether a plugin aborted the chain, and the
// last plugin that returned a result (for the log line).
struct ChainResult {
    std::vector<std::string> actions;
    bool abort = false;
    std::string plugin;

    void addAction(const std::string& plugin, const std::string& action, bool abortChain = true);
    void clear();
};

class Request {
public:
    using Attrs = std::unordered_map<std::string, std::string>;

    Attrs attrs;
    Session* session = nullptr;  // set before the chain runs; never null inside plugins
    const VirtualHost* vhost = nullptr;
    ChainResult result;

    // The attribute, or nullptr when Postfix did not send it.
    const std::string* attr(const std::string& name) const;
    // The attribute, or "" when absent.
    const std::string& get(const std::string& name) const;
    // mtpolicyd's $r->get("scope:name"): scope request/r (default) or session/s.
    // Returns nullptr when the value is not defined.
    const std::string* lookup(const std::string& scopedKey) const;
    // Checks a scoped key at configuration time; returns "" or an error text.
    static std::string checkScopedKey(const std::string& scopedKey);

    Session& sess() { return *session; }
    const std::string& type() const { return get("request"); }
    void clear();
};

}  // namespace mtp
