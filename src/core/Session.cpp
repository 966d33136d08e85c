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

void SessionStore::evictOldest() {
    sessions_.erase(lru_.back());
    lru_.pop_back();
}

Session& SessionStore::acquire(const std::string& instance, time_t now) {
    if (instance.empty()) {
        scratch_.clear();
        scratch_.lastUsed = now;
        return scratch_;
    }
    auto it = sessions_.find(instance);
    if (it != sessions_.end()) {
        Entry& e = it->second;
        if (now - e.session.lastUsed > expireSeconds_) {
            e.session.clear();
            e.session.set("_instance", instance);
        }
        e.session.lastUsed = now;
        lru_.splice(lru_.begin(), lru_, e.lru);  // most recently used first
        return e.session;
    }
    if (sessions_.size() >= maxEntries_) {
        expire(now);
        while (sessions_.size() >= maxEntries_) evictOldest();
    }
    lru_.push_front(instance);
    Entry& e = sessions_[instance];
    e.lru = lru_.begin();
    e.session.lastUsed = now;
    e.session.set("_instance", instance);
    return e.session;
}

size_t SessionStore::expire(time_t now) {
    size_t n = 0;
    while (!lru_.empty()) {
        auto it = sessions_.find(lru_.back());
        if (now - it->second.session.lastUsed <= expireSeconds_) break;
        evictOldest();
        ++n;
    }
    return n;
}

}  // namespace mtp
