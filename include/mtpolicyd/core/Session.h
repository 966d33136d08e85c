// Per-message state. Postfix sends the same `instance` for every request of one message;
// the worker keeps one Session per instance (expiring) so that "once per message" logic,
// scores and user-config variables carry across the requests of a connection.
#pragma once

#include <ctime>
#include <list>
#include <string>
#include <unordered_map>

namespace mtp {

class Session {
public:
    std::unordered_map<std::string, std::string> vars;

    const std::string* get(const std::string& key) const;
    void set(const std::string& key, const std::string& value) { vars[key] = value; }
    void erase(const std::string& key) { vars.erase(key); }
    void clear() { vars.clear(); }

    // mtpolicyd's is_already_done: false (and remembers the key) the first time, true after.
    bool isAlreadyDone(const std::string& key);

    // Scoring (mtpolicyd Role::Scoring): the score lives in vars[field], the detail in
    // vars[field + "_detail"] as "name=value, name=value".
    double score(const std::string& field) const;
    void addScore(const std::string& field, const std::string& name, double value);

    time_t lastUsed = 0;
};

// The worker's sessions, keyed by instance. Sessions expire `expireSeconds` after their last
// use; the store never holds more than maxEntries (oldest dropped first when full).
class SessionStore {
public:
    SessionStore(int expireSeconds, size_t maxEntries);
    // The session for `instance`; an empty instance gets a fresh throw-away session.
    Session& acquire(const std::string& instance, time_t now);
    // Drops expired sessions; returns how many were dropped.
    size_t expire(time_t now);
    size_t size() const { return sessions_.size(); }

private:
    struct Entry {
        Session session;
        std::list<std::string>::iterator lru;  // position in lru_
    };
    void evictOldest();

    int expireSeconds_;
    size_t maxEntries_;
    std::unordered_map<std::string, Entry> sessions_;
    // Instances by last use, most recent first: expiry and eviction take from the back in
    // O(1), so a full store costs nothing per request.
    std::list<std::string> lru_;
    Session scratch_;
};

}  // namespace mtp
