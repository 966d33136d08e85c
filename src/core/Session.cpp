// Session and SessionStore (see Session.h).
#include "mtpolicyd/core/Session.h"

#include "mtpolicyd/util/Strings.h"

namespace mtp {

Session::Var* Session::find(const std::string& key) {
    for (Var& v : vars)
        if (v.first == key) return &v;
    return nullptr;
}

const std::string* Session::get(const std::string& key) const {
    for (const Var& v : vars)
        if (v.first == key) return &v.second;
    if (instance_ && key == "_instance") return instance_;
    return nullptr;
}

void Session::set(const std::string& key, const std::string& value) { ref(key) = value; }

std::string& Session::ref(const std::string& key) {
    if (Var* v = find(key)) return v->second;
    vars.emplace_back(key, std::string());
    return vars.back().second;
}

void Session::erase(const std::string& key) {
    for (auto it = vars.begin(); it != vars.end(); ++it)
        if (it->first == key) {
            vars.erase(it);
            return;
        }
}

bool Session::isAlreadyDone(const std::string& key) {
    if (find(key)) return true;
    vars.emplace_back(key, "1");
    return false;
}

double Session::score(const std::string& field) const {
    const std::string* v = get(field);
    double d = 0;
    if (v) parseNumber(*v, d);
    return d;
}

void Session::addScore(const std::string& field, const std::string& name, double value) {
    set(field, formatNumber(score(field) + value));
    std::string& detail = ref(field + "_detail");
    if (!detail.empty()) detail += ", ";
    detail += name + "=" + formatNumber(value);
}

SessionStore::SessionStore(int expireSeconds, size_t maxEntries)
    : expireSeconds_(expireSeconds), maxEntries_(maxEntries ? maxEntries : 1) {}

void SessionStore::unlink(Entry& e) {
    (e.newer ? e.newer->older : newest_) = e.older;
    (e.older ? e.older->newer : oldest_) = e.newer;
    e.newer = e.older = nullptr;
}

void SessionStore::pushNewest(Entry& e) {
    e.older = newest_;
    e.newer = nullptr;
    (newest_ ? newest_->newer : oldest_) = &e;
    newest_ = &e;
}

void SessionStore::erase(Entry& e) {
    unlink(e);
    // The key lives in the node being erased: find the node first, then erase by iterator.
    sessions_.erase(sessions_.find(*e.session.instance_));
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
        if (now - e.session.lastUsed > expireSeconds_) e.session.clear();
        e.session.lastUsed = now;
        unlink(e);
        pushNewest(e);  // most recently used
        return e.session;
    }
    // Room for one more than maxEntries: release() decides whether the new session is kept,
    // and only then pushes out the oldest (an empty session must not evict a real one).
    if (sessions_.size() >= maxEntries_) {
        expire(now);
        while (sessions_.size() > maxEntries_) erase(*oldest_);
    }
    auto res = sessions_.emplace(instance, Entry());
    Entry& e = res.first->second;
    e.session.instance_ = &res.first->first;
    e.session.lastUsed = now;
    pushNewest(e);
    return e.session;
}

void SessionStore::release(Session& session) {
    if (&session == &scratch_ || !session.instance_) return;
    if (session.vars.empty()) {
        auto it = sessions_.find(*session.instance_);
        if (it != sessions_.end() && &it->second.session == &session) erase(it->second);
        return;
    }
    while (sessions_.size() > maxEntries_) erase(*oldest_);
}

size_t SessionStore::expire(time_t now) {
    size_t n = 0;
    while (oldest_ && now - oldest_->session.lastUsed > expireSeconds_) {
        erase(*oldest_);
        ++n;
    }
    return n;
}

}  // namespace mtp
