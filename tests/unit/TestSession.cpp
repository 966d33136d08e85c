// Unit tests for mtp::Session (is_already_done, scoring with mtpolicyd's number and detail
// formats) and mtp::SessionStore (one session per Postfix `instance`, a fresh throw-away session
// without an instance, expiry after the last use, and the least recently used entry dropped when
// the store is full). Times are explicit `now` values, never the wall clock.
#include <cppunit/extensions/HelperMacros.h>

#include <string>

#include "mtpolicyd/core/Session.h"

using mtp::Session;
using mtp::SessionStore;

class TestSession : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestSession);
    CPPUNIT_TEST(testGetSetErase);
    CPPUNIT_TEST(testIsAlreadyDone);
    CPPUNIT_TEST(testScoreUnsetIsZero);
    CPPUNIT_TEST(testAddScoreFormatsLikePerl);
    CPPUNIT_TEST(testAddScoreNegativeAndFraction);
    CPPUNIT_TEST(testScoreFieldsAreIndependent);
    CPPUNIT_TEST(testStoreSameInstanceSameSession);
    CPPUNIT_TEST(testStoreDifferentInstances);
    CPPUNIT_TEST(testStoreNewSessionHasInstance);
    CPPUNIT_TEST(testStoreEmptyInstanceIsFreshEachTime);
    CPPUNIT_TEST(testStoreExpiry);
    CPPUNIT_TEST(testStoreExpirySlides);
    CPPUNIT_TEST(testStoreExpiredSessionLooksNew);
    CPPUNIT_TEST(testStoreExpireDropsOldOnly);
    CPPUNIT_TEST(testStoreMaxEntriesEvictsLeastRecentlyUsed);
    CPPUNIT_TEST(testStoreFullDropsExpiredFirst);
    CPPUNIT_TEST(testReleaseDropsEmptySessionsOnly);
    CPPUNIT_TEST(testInstanceIsNotAVariable);
    CPPUNIT_TEST(testEvictionOrderSurvivesReleaseAndReuse);
    CPPUNIT_TEST_SUITE_END();

  public:
    void testGetSetErase() {
        Session s;
        CPPUNIT_ASSERT(s.get("quota_count") == nullptr);
        s.set("quota_count", "100000");
        CPPUNIT_ASSERT(s.get("quota_count") != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("100000"), *s.get("quota_count"));
        s.set("quota_count", "");
        CPPUNIT_ASSERT(s.get("quota_count") != nullptr);  // defined, though empty
        s.erase("quota_count");
        CPPUNIT_ASSERT(s.get("quota_count") == nullptr);
    }

    void testIsAlreadyDone() {
        Session s;
        CPPUNIT_ASSERT(!s.isAlreadyDone("AcctIP-acct"));
        CPPUNIT_ASSERT(s.get("AcctIP-acct") != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), *s.get("AcctIP-acct"));
        CPPUNIT_ASSERT(s.isAlreadyDone("AcctIP-acct"));
        CPPUNIT_ASSERT(s.isAlreadyDone("AcctIP-acct"));
        // Another key is independent.
        CPPUNIT_ASSERT(!s.isAlreadyDone("score-score-tag"));
    }

    void testScoreUnsetIsZero() {
        Session s;
        CPPUNIT_ASSERT_EQUAL(0.0, s.score("score"));
        s.set("score", "not a number");
        CPPUNIT_ASSERT_EQUAL(0.0, s.score("score"));
    }

    void testAddScoreFormatsLikePerl() {
        // upstream t/scoring.t
        Session s;
        s.addScore("score", "ZUMSEL", 5);
        CPPUNIT_ASSERT_EQUAL(std::string("5"), *s.get("score"));
        CPPUNIT_ASSERT_EQUAL(std::string("ZUMSEL=5"), *s.get("score_detail"));
        s.addScore("score", "BLA", 2.5);
        CPPUNIT_ASSERT_EQUAL(std::string("7.5"), *s.get("score"));
        CPPUNIT_ASSERT_EQUAL(std::string("ZUMSEL=5, BLA=2.5"), *s.get("score_detail"));
        s.addScore("score", "BLUB", 2.5);
        CPPUNIT_ASSERT_EQUAL(std::string("10"), *s.get("score"));
        CPPUNIT_ASSERT_EQUAL(std::string("ZUMSEL=5, BLA=2.5, BLUB=2.5"), *s.get("score_detail"));
        CPPUNIT_ASSERT_EQUAL(10.0, s.score("score"));
    }

    void testAddScoreNegativeAndFraction() {
        Session s;
        s.addScore("score", "good", -3);
        CPPUNIT_ASSERT_EQUAL(std::string("-3"), *s.get("score"));
        s.addScore("score", "tiny", 0.1);
        CPPUNIT_ASSERT_EQUAL(std::string("-2.9"), *s.get("score"));
        CPPUNIT_ASSERT_EQUAL(std::string("good=-3, tiny=0.1"), *s.get("score_detail"));
        s.addScore("score", "back", 2.9);
        CPPUNIT_ASSERT_EQUAL(std::string("0"), *s.get("score"));
    }

    void testScoreFieldsAreIndependent() {
        Session s;
        s.addScore("score", "a", 1);
        s.addScore("spam", "b", 7);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), *s.get("score"));
        CPPUNIT_ASSERT_EQUAL(std::string("7"), *s.get("spam"));
        CPPUNIT_ASSERT_EQUAL(std::string("a=1"), *s.get("score_detail"));
        CPPUNIT_ASSERT_EQUAL(std::string("b=7"), *s.get("spam_detail"));
    }

    void testStoreSameInstanceSameSession() {
        SessionStore store(300, 100);
        Session& a = store.acquire("1F2E3D.A1", 1000);
        a.set("greylist-ticket", "x");
        Session& b = store.acquire("1F2E3D.A1", 1010);
        CPPUNIT_ASSERT(&a == &b);
        CPPUNIT_ASSERT(b.get("greylist-ticket") != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("x"), *b.get("greylist-ticket"));
        CPPUNIT_ASSERT_EQUAL(size_t(1), store.size());
    }

    void testStoreDifferentInstances() {
        SessionStore store(300, 100);
        store.acquire("one", 1000).set("k", "1");
        Session& two = store.acquire("two", 1000);
        CPPUNIT_ASSERT(two.get("k") == nullptr);
        CPPUNIT_ASSERT_EQUAL(size_t(2), store.size());
        CPPUNIT_ASSERT_EQUAL(std::string("1"), *store.acquire("one", 1001).get("k"));
    }

    void testStoreNewSessionHasInstance() {
        // mtpolicyd starts a session as { _instance => <instance> }.
        SessionStore store(300, 100);
        Session& s = store.acquire("abcd1234", 1000);
        CPPUNIT_ASSERT(s.get("_instance") != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("abcd1234"), *s.get("_instance"));
    }

    void testStoreEmptyInstanceIsFreshEachTime() {
        SessionStore store(300, 100);
        Session& a = store.acquire("", 1000);
        a.set("score", "5");
        CPPUNIT_ASSERT(!a.isAlreadyDone("x-acct"));
        Session& b = store.acquire("", 1000);
        CPPUNIT_ASSERT(b.get("score") == nullptr);
        CPPUNIT_ASSERT(!b.isAlreadyDone("x-acct"));
        CPPUNIT_ASSERT_EQUAL(size_t(0), store.size());
    }

    void testStoreExpiry() {
        SessionStore store(300, 100);
        store.acquire("i1", 1000).set("v", "kept");
        // Within the expiry time: still there.
        CPPUNIT_ASSERT(store.acquire("i1", 1299).get("v") != nullptr);
        // More than expireSeconds after the last use: a new session.
        Session& s = store.acquire("i1", 1299 + 301);
        CPPUNIT_ASSERT(s.get("v") == nullptr);
    }

    void testStoreExpirySlides() {
        SessionStore store(300, 100);
        store.acquire("i1", 1000).set("v", "kept");
        for (time_t t = 1250; t <= 2000; t += 250) {
            Session& s = store.acquire("i1", t);
            CPPUNIT_ASSERT_MESSAGE("at t=" + std::to_string(t), s.get("v") != nullptr);
        }
    }

    void testStoreExpiredSessionLooksNew() {
        SessionStore store(300, 100);
        store.acquire("i1", 1000).set("v", "old");
        Session& s = store.acquire("i1", 2000);
        CPPUNIT_ASSERT(s.get("v") == nullptr);
        CPPUNIT_ASSERT(s.get("_instance") != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("i1"), *s.get("_instance"));
    }

    void testStoreExpireDropsOldOnly() {
        SessionStore store(300, 100);
        store.acquire("old1", 1000);
        store.acquire("old2", 1100);
        store.acquire("new", 1500);
        CPPUNIT_ASSERT_EQUAL(size_t(3), store.size());
        CPPUNIT_ASSERT_EQUAL(size_t(2), store.expire(1500 + 100));
        CPPUNIT_ASSERT_EQUAL(size_t(1), store.size());
        CPPUNIT_ASSERT_EQUAL(size_t(0), store.expire(1500 + 100));
        CPPUNIT_ASSERT_EQUAL(size_t(1), store.expire(1500 + 301));
        CPPUNIT_ASSERT_EQUAL(size_t(0), store.size());
    }

    // One request as the worker makes it: acquire, let the "chain" set a value, release.
    // Returns the value the session had before.
    static std::string use(SessionStore& store, const std::string& instance, time_t now,
                           const std::string& setTo = "") {
        Session& s = store.acquire(instance, now);
        const std::string* old = s.get("v");
        std::string before = old ? *old : "<none>";
        if (!setTo.empty()) s.set("v", setTo);
        store.release(s);
        return before;
    }

    void testStoreMaxEntriesEvictsLeastRecentlyUsed() {
        SessionStore store(300, 3);
        use(store, "a", 1, "a");
        use(store, "b", 2, "b");
        use(store, "c", 3, "c");
        use(store, "a", 4);  // a is now more recent than b
        use(store, "d", 5, "d");
        CPPUNIT_ASSERT_EQUAL(size_t(3), store.size());
        CPPUNIT_ASSERT_EQUAL(std::string("a"), use(store, "a", 6));
        CPPUNIT_ASSERT_EQUAL(std::string("c"), use(store, "c", 7));
        CPPUNIT_ASSERT_EQUAL(std::string("d"), use(store, "d", 8));
        // b was dropped: it comes back empty; kept again, it pushes out the now oldest, a.
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), use(store, "b", 9, "b"));
        CPPUNIT_ASSERT_EQUAL(size_t(3), store.size());
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), use(store, "a", 10));
        // The empty "a" was not kept, and evicted nothing: c, d, b are still there.
        CPPUNIT_ASSERT_EQUAL(size_t(3), store.size());
        use(store, "a", 11, "a");  // kept: pushes out c, the least recently used
        for (int i = 0; i < 10; ++i) use(store, "empty" + std::to_string(i), 12);
        CPPUNIT_ASSERT_EQUAL(size_t(3), store.size());
        CPPUNIT_ASSERT_EQUAL(std::string("d"), use(store, "d", 13));
        CPPUNIT_ASSERT_EQUAL(std::string("b"), use(store, "b", 13));
        CPPUNIT_ASSERT_EQUAL(std::string("a"), use(store, "a", 13));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), use(store, "c", 13));
    }

    void testReleaseDropsEmptySessionsOnly() {
        // A chain that writes nothing (most of them) must not leave a session behind: the
        // store, and so the worker's memory, stays empty under any number of messages.
        SessionStore store(300, 100);
        for (int i = 0; i < 1000; ++i) {
            Session& s = store.acquire("empty" + std::to_string(i), 1000);
            store.release(s);
        }
        CPPUNIT_ASSERT_EQUAL(size_t(0), store.size());
        Session& kept = store.acquire("kept", 1000);
        kept.set("quota_count", "10");
        store.release(kept);
        CPPUNIT_ASSERT_EQUAL(size_t(1), store.size());
        Session& again = store.acquire("kept", 1001);
        CPPUNIT_ASSERT(&again == &kept);
        CPPUNIT_ASSERT_EQUAL(std::string("10"), *again.get("quota_count"));
        // Emptied by the chain (ClearFields): dropped, and comes back new.
        again.erase("quota_count");
        store.release(again);
        CPPUNIT_ASSERT_EQUAL(size_t(0), store.size());
        CPPUNIT_ASSERT(store.acquire("kept", 1002).get("quota_count") == nullptr);
        // The throw-away session of a request without instance is never stored.
        Session& scratch = store.acquire("", 1003);
        scratch.set("score", "1");
        store.release(scratch);
        CPPUNIT_ASSERT_EQUAL(size_t(1), store.size());  // only "kept" from the line above
    }

    void testInstanceIsNotAVariable() {
        SessionStore store(300, 100);
        Session& s = store.acquire("0123456789abcdef.instance", 1000);
        CPPUNIT_ASSERT_EQUAL(size_t(0), s.vars.size());
        CPPUNIT_ASSERT_EQUAL(std::string("0123456789abcdef.instance"), *s.get("_instance"));
        s.set("_instance", "overridden");  // a plugin may still set it, as in mtpolicyd
        CPPUNIT_ASSERT_EQUAL(std::string("overridden"), *s.get("_instance"));
        CPPUNIT_ASSERT(store.acquire("", 1000).get("_instance") == nullptr);
    }

    void testEvictionOrderSurvivesReleaseAndReuse() {
        // Interleave drops of empty sessions with use of kept ones: the LRU links stay intact.
        SessionStore store(300, 3);
        for (int round = 0; round < 50; ++round) {
            std::string k = "k" + std::to_string(round);
            use(store, k, 10 + round, k);
            use(store, "tmp" + std::to_string(round), 10 + round);
            if (round >= 1) use(store, "k" + std::to_string(round - 1), 10 + round);
        }
        CPPUNIT_ASSERT_EQUAL(size_t(3), store.size());
        // The three most recently used: k49 (set), k48 (touched), k47 (touched at round 48).
        for (const char* k : {"k49", "k48", "k47"}) {
            const std::string* v = store.acquire(k, 100).get("v");
            CPPUNIT_ASSERT_MESSAGE(k, v != nullptr);
            CPPUNIT_ASSERT_EQUAL(std::string(k), *v);
        }
        CPPUNIT_ASSERT_EQUAL(size_t(3), store.expire(100 + 301));
        CPPUNIT_ASSERT_EQUAL(size_t(0), store.size());
    }

    void testStoreFullDropsExpiredFirst() {
        SessionStore store(100, 3);
        store.acquire("stale", 1).set("v", "s");
        store.acquire("x", 150).set("v", "x");
        store.acquire("y", 160).set("v", "y");
        // stale (last used at 1) has expired by 200; x is the least recently used live one.
        store.acquire("z", 200);
        CPPUNIT_ASSERT_EQUAL(size_t(3), store.size());
        CPPUNIT_ASSERT(store.acquire("x", 201).get("v") != nullptr);
        CPPUNIT_ASSERT(store.acquire("y", 202).get("v") != nullptr);
    }
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestSession);
