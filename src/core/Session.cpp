// Session and SessionStore (see Session.h).
#include "mtpolicyd/core/Session.h"

#include "mtpolicyd/util/Strings.h"

namespace mtp {

const std::string* Session::get(const std::string& key) const {
    auto it = vars.find(key);
    return it == vars.end() ? nullptr : &it->second;
}

bool Session::isAlreadyDone(const std::string& key) {
    auto res = vars.emplace(key, "1");
    return !res.second;
}

double Session::score(const std::string& field) const {
    const std::string* v = get(field);
    double d = 0;
    if (v) parseNumber(*v, d);
    return d;
}

void Session::addScore(const std::string& field, const std::string& name, double value) {
    set(field, formatNumber(score(field) + value));
    std::string& detail = vars[field + "_detail"];
    if (!detail.empty()) detail += ", ";
    detail += name + "=" + formatNumber(value);
}

SessionStore::SessionStore(int expireSeconds, size_t maxEntries)
    : expireSeconds_(expireSeconds), maxEntries_(maxEntries ? maxEntries : 1) {}

Session& SessionStore::acquire(const std::string& instance, time_t now) {
    if (instance.empty()) {
        scratch_.clear();
        scratch_.lastUsed = now;
        return scratch_;
    }
    auto it = sessions_.find(instance);
    if (it != sessions_.end()) {
        if (now - it->second.lastUsed > expireSeconds_) {
            it->second.clear();
            it->second.set("_instance", instance);
        }
        it->second.lastUsed = now;
        return it->second;
    }
    if (sessions_.size() >= maxEntries_) {
        expire(now);
        if (sessions_.size() >= maxEntries_) {
            // Still full: drop the least recently used entry.
            auto oldest = sessions_.begin();
            for (auto i = sessions_.begin(); i != sessions_.end(); ++i)
                if (i->second.lastUsed < oldest->second.lastUsed) oldest = i;
            sessions_.erase(oldest);
        }
    }
    Session& s = sessions_[instance];
    s.lastUsed = now;
    s.set("_instance", instance);
    return s;
}

size_t SessionStore::expire(time_t now) {
    size_t n = 0;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
        if (now - it->second.lastUsed > expireSeconds_) {
            it = sessions_.erase(it);
            ++n;
        } else {
            ++it;
        }
    }
    return n;
}

}  // namespace mtp
