// Request and ChainResult (see Request.h).
#include "mtpolicyd/core/Request.h"

namespace mtp {

void ChainResult::addAction(const std::string& fromPlugin, const std::string& action, bool abortChain) {
    // An action is one protocol line: never let a value smuggle a line break into the reply.
    std::string a = action;
    for (auto& c : a)
        if (c == '\n' || c == '\r' || c == '\0') c = ' ';
    actions.push_back(std::move(a));
    plugin = fromPlugin;
    if (abortChain) abort = true;
}

void ChainResult::clear() {
    actions.clear();
    abort = false;
    plugin.clear();
}

const std::string* Request::attr(const std::string& name) const {
    auto it = attrs.find(name);
    return it == attrs.end() ? nullptr : &it->second;
}

const std::string& Request::get(const std::string& name) const {
    static const std::string empty;
    const std::string* v = attr(name);
    return v ? *v : empty;
}

namespace {
enum class Scope { Request, Session, Bad };
Scope splitScope(const std::string& key, std::string& name) {
    auto colon = key.find(':');
    if (colon == std::string::npos) {
        name = key;
        return Scope::Request;
    }
    std::string scope = key.substr(0, colon);
    name = key.substr(colon + 1);
    if (scope == "request" || scope == "r") return Scope::Request;
    if (scope == "session" || scope == "s") return Scope::Session;
    return Scope::Bad;
}
}  // namespace

const std::string* Request::lookup(const std::string& scopedKey) const {
    std::string name;
    switch (splitScope(scopedKey, name)) {
        case Scope::Request: return attr(name);
        case Scope::Session: return session ? session->get(name) : nullptr;
        case Scope::Bad: break;
    }
    return nullptr;
}

std::string Request::checkScopedKey(const std::string& scopedKey) {
    std::string name;
    if (splitScope(scopedKey, name) == Scope::Bad)
        return "unknown scope in '" + scopedKey + "' (use request: or session:)";
    if (name.empty()) return "empty attribute name in '" + scopedKey + "'";
    return "";
}

void Request::clear() {
    attrs.clear();
    session = nullptr;
    vhost = nullptr;
    result.clear();
}

}  // namespace mtp
