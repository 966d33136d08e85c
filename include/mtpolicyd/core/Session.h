// Per-message state. Postfix sends the same `instance` for every request of one message;
// the worker keeps one Session per instance (expiring) so that "once per message" logic,
// scores and user-config variables carry across the requests of a connection.
#pragma once

#include <ctime>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mtp {

class Session {
public:
    // A session holds a handful of variables: a flat vector searched linearly is smaller and
    // faster than a hash map (a worker keeps up to session_max_entries sessions).
    using Var = std::pair<std::string, std::string>;
    std::vector<Var> vars;

    // Also answers "_instance" (mtpolicyd starts a session as { _instance => <instance> })
    // without storing a copy of it.
    const std::string* get(const std::string& key) const;
    void set(const std::string& key, const std::string& value);
    std::string& ref(const std::string& key);  // the value, created empty when missing
    void erase(const std::string& key);
    void clear() { vars.clear(); }

    // mtpolicyd's is_already_done: false (and remembers the key) the first time, true after.
    bool isAlreadyDone(const std::string& key);

    // Scoring (mtpolicyd Role::Scoring): the score lives in vars[field], the detail in
    // vars[field + "_detail"] as "name=value, name=value".
    double score(const std::string& field) const;
    void addScore(const std::string& field, const std::string& name, double value);

    time_t lastUsed = 0;

private:
    friend class SessionStore;
    Var* find(const std::string& key);
    const std::string* instance_ = nullptr;  // the store's key; null for a throw-away session
};

// The worker's sessions, keyed by instance. Sessions expire `expireSeconds` after their last
// use; after release() the store holds at most maxEntries (least recently used dropped first
// when full), between acquire() and release() at most one more.
class SessionStore {
public:
    SessionStore(int expireSeconds, size_t maxEntries);
    // The session for `instance`; an empty instance gets a fresh throw-away session.
    Session& acquire(const std::string& instance, time_t now);
    // After the request: a session that holds no variables is not kept (most chains never
    // write one, and an empty session is the same as a new one).
    void release(Session& session);
    // Drops expired sessions; returns how many were dropped.
    size_t expire(time_t now);
    size_t size() const { return sessions_.size(); }

private:
    // Entries are linked by last use (an intrusive list through the map's nodes, which do
    // not move): expiry and eviction take from the oldest end in O(1), so a full store costs
    // nothing per request.
    struct Entry {
        Session session;
        Entry* newer = nullptr;
        Entry* older = nullptr;
    };
    void unlink(Entry& e);
    void pushNewest(Entry& e);
    void erase(Entry& e);

    int expireSeconds_;
    size_t maxEntries_;
    std::unordered_map<std::string, Entry> sessions_;
    Entry* newest_ = nullptr;
    Entry* oldest_ = nullptr;
    Session scratch_;
};

}  // namespace mtp
