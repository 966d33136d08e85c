// Fault-injection tests: what an admin would check when things go wrong under load. The real
// mtpolicyd (DaemonFixture), on the private MariaDB (MariaDbFixture) where a test needs it,
// driven by 8 client threads that behave like Postfix's smtpd: one kept-alive connection each,
// one request at a time, and a request whose connection closes without an answer resent with
// the same attributes (the same instance) on a new connection until it is answered.
//
//  1. testWorkerCrashUnderLoad: SIGKILL a random worker every second for 10 s while the
//     accounting chain counts messages: every message answered, the master stays, the worker
//     count returns to its range, and the counters are exact (nothing lost, nothing counted
//     twice, also for messages whose worker died after its write but before its answer).
//  2. testReloadUnderLoad: 20 SIGHUPs in 10 s, a changed valid config and a broken one in
//     turn: no connect refused, no request lost, the last valid config serves at the end, and
//     each failed reload is logged with file:line.
//  3. testDatabaseOutageUnderLoad: mariadbd SIGKILLed and restarted on the same datadir after
//     ~3 s: no worker dies, no answer while the database is away (default on_error: the
//     connection is closed, the client resends), service and counting resume within 2 s of
//     the database being back, nothing counted twice.
//  4. testStoppedWorkerUnderLoad: one worker SIGSTOPped for 5 s under load: the other workers
//     keep answering, on their connections and on new ones; nothing is lost after SIGCONT.
//
// Each test prints one line "RELIABILITY <test> key=value ..." on stdout with its figures
// (tests/reliability/run.sh collects them), before its assertions, so that a failing test
// reports its figures too.
//
// Ownership: every test starts its own mtpolicyd (tearDown stops it: SIGTERM, then SIGKILL by
// pid); the database tests use the test program's one private MariaDB, which tearDown starts
// again when a test left it down. Client threads are joined before a test ends; a stopped
// worker is continued by a guard. Signals go only to the master and workers of the daemon the
// test started, by pid. Only loopback TCP and the server's unix socket are used.
#include <cppunit/extensions/HelperMacros.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "DaemonFixture.h"
#include "MariaDbFixture.h"
#include "PostfixLoad.h"

using itest::Clock;
using itest::Conn;
using itest::Daemon;
using itest::elapsedMs;

namespace {

using itest::sleepMs;
using itest::pidList;
using itest::localPort;

using itest::confString;
using itest::sqlStatements;
using itest::srcdir;
using itest::Counters;
using itest::eomRequest;

void sleepUntil(Clock::time_point t) { std::this_thread::sleep_until(t); }

long msBetween(Clock::time_point a, Clock::time_point b) {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count());
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

// Lines of `text` that contain `needle`.
std::vector<std::string> linesWith(const std::string& text, const std::string& needle) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (contains(line, needle)) out.push_back(line);
    return out;
}

int lineCount(const std::string& text) {
    return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// A tag that makes this run's instances unique also in tables that outlive a test.
std::string runTag(const std::string& what) {
    return what + "-" + std::to_string(getpid()) + "-" + std::to_string(time(nullptr));
}

// One line "RELIABILITY <test> key=value ..." on stdout, for tests/reliability/run.sh.
void reliability(const std::string& test,
                 const std::vector<std::pair<std::string, std::string>>& figures) {
    std::string line = "RELIABILITY " + test;
    for (const auto& f : figures) {
        std::string v = f.second;
        for (char& c : v)
            if (c == ' ' || c == '\n' || c == '\t') c = '_';
        line += " " + f.first + "=" + (v.empty() ? "-" : v);
    }
    std::cout << line << std::endl;
}

template <typename T>
std::string str(T v) {
    return std::to_string(v);
}


// The client-side ports of the established TCP connections to local `port` whose socket
// process `pid` holds.
std::set<int> clientPortsHeldBy(pid_t pid, int port) {
    std::map<std::string, int> byInode;  // inode -> remote (client) port
    std::istringstream table(itest::readFile("/proc/" + std::to_string(pid) + "/net/tcp"));
    std::string line;
    std::getline(table, line);  // header
    while (std::getline(table, line)) {
        std::istringstream f(line);
        std::string sl, local, remote, st, queues, timer, retr, uid, timeout, inode;
        f >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode;
        if (st != "01" || local.size() < 5 || remote.size() < 5) continue;
        if (std::stoi(local.substr(local.size() - 4), nullptr, 16) != port) continue;
        byInode[inode] = std::stoi(remote.substr(remote.size() - 4), nullptr, 16);
    }
    std::set<int> out;
    std::string fdDir = "/proc/" + std::to_string(pid) + "/fd";
    if (DIR* dir = opendir(fdDir.c_str())) {
        while (dirent* e = readdir(dir)) {
            char target[256];
            ssize_t len = readlink((fdDir + "/" + e->d_name).c_str(), target, sizeof target - 1);
            if (len <= 0) continue;
            std::string t(target, static_cast<size_t>(len));
            if (t.rfind("socket:[", 0) != 0) continue;
            auto it = byInode.find(t.substr(8, t.size() - 9));
            if (it != byInode.end()) out.insert(it->second);
        }
        closedir(dir);
    }
    return out;
}

// Connections waiting in the accept queue of the listening socket on local `port` (the
// rx_queue of its LISTEN entry in /proc/net/tcp), or -1 when there is none.
long acceptBacklog(int port) {
    std::istringstream table(itest::readFile("/proc/self/net/tcp"));
    std::string line;
    std::getline(table, line);  // header
    while (std::getline(table, line)) {
        std::istringstream f(line);
        std::string sl, local, remote, st, queues;
        f >> sl >> local >> remote >> st >> queues;
        if (st != "0A" || local.size() < 5) continue;
        if (std::stoi(local.substr(local.size() - 4), nullptr, 16) != port) continue;
        size_t colon = queues.find(':');
        if (colon == std::string::npos) return -1;
        return std::stol(queues.substr(colon + 1), nullptr, 16);
    }
    return -1;
}

using Load = itest::PostfixLoad;

// Sums over the messages of a load.
struct LoadFigures {
    size_t messages = 0, answered = 0, gaveUp = 0, resentMessages = 0, resends = 0;
    size_t noReply = 0, idleClosed = 0, hangs = 0, connectFailed = 0;
    int maxAttempts = 0;
    long maxLatencyMs = 0;
    Counters counted;  // what the answered messages should have added
    std::set<std::string> actions;
};

LoadFigures figuresOf(const Load& load) {
    LoadFigures f;
    for (const auto& m : load.messages()) {
        ++f.messages;
        if (!m.answered) {
            ++f.gaveUp;
            continue;
        }
        ++f.answered;
        f.counted.add(m.rcpt, m.size);
        f.actions.insert(m.action);
        if (m.attempts > 1) {
            ++f.resentMessages;
            f.resends += static_cast<size_t>(m.attempts - 1);
        }
        f.maxAttempts = std::max(f.maxAttempts, m.attempts);
        f.maxLatencyMs = std::max(f.maxLatencyMs, msBetween(m.firstSent, m.answeredAt));
    }
    f.noReply = load.countOf(Load::Kind::NoReply);
    f.idleClosed = load.countOf(Load::Kind::IdleClosed);
    f.hangs = load.countOf(Load::Kind::Hang);
    f.connectFailed = load.countOf(Load::Kind::ConnectFailed);
    return f;
}

std::string actionsOf(const LoadFigures& f) {
    std::string s;
    for (const auto& a : f.actions) s += (s.empty() ? "" : ", ") + a;
    return s;
}

// Continues a SIGSTOPped process when it goes out of scope (also when an assertion throws).
struct ContinueGuard {
    pid_t pid;
    ~ContinueGuard() {
        if (pid > 0) ::kill(pid, SIGCONT);
    }
};

}  // namespace

class TestFaults : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestFaults);
    CPPUNIT_TEST(testWorkerCrashUnderLoad);
    CPPUNIT_TEST(testReloadUnderLoad);
    CPPUNIT_TEST(testDatabaseOutageUnderLoad);
    CPPUNIT_TEST(testStoppedWorkerUnderLoad);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override { d_ = std::make_unique<Daemon>(); }

    void tearDown() override {
        d_.reset();  // stops the daemon, removes its dir
        if (db_) {
            try {
                db_->start();  // leave the shared server running for the next test
            } catch (const std::exception& e) {
                std::fprintf(stderr, "[TestFaults] cannot restart MariaDB: %s\n", e.what());
            }
        }
    }

    // 1. Worker crash under load. The how-to chain (SqlUserConfig -> Quota -> Accounting on
    //    client_address, InnoDB tables of sql/mysql.sql) with min_servers 4; 8 Postfix-like
    //    client threads send END-OF-MESSAGE requests, a unique instance per message; a random
    //    worker is SIGKILLed every second for 10 s.
    void testWorkerCrashUnderLoad() {
        prepareDb();
        const std::string client = "203.0.113.41";
        const int minServers = 4, maxServers = 8;
        start(globals(2, minServers, maxServers, 1, 4) + connection() + howtoVhost());
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(),
                               itest::waitFor([&] { return d_->workers().size() >= 4; }, 3000));
        const pid_t master = d_->pid();

        Load load(d_->port(1), runTag("crash"), 8, 0, [&](const Load::Msg& m) {
            return eomRequest(m.instance, client, m.rcpt, m.size);
        });
        auto tLoad = Clock::now();
        load.start();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(),
                               itest::waitFor([&] { return load.answered() >= 100; }, 10000));

        std::random_device rd;
        const unsigned seed = rd();
        std::mt19937 rng(seed);
        int kills = 0, killBusy = 0;
        std::vector<pid_t> victims;
        auto t0 = Clock::now();
        for (int i = 0; i < 10; ++i) {
            sleepUntil(t0 + std::chrono::milliseconds(1000 * (i + 1)));
            std::vector<pid_t> ws = d_->workers();
            if (ws.empty()) continue;
            pid_t victim = ws[std::uniform_int_distribution<size_t>(0, ws.size() - 1)(rng)];
            itest::ProcStat st;
            if (itest::readProcStat(victim, st) && st.state == 'R') ++killBusy;
            if (::kill(victim, SIGKILL) == 0) {
                ++kills;
                victims.push_back(victim);
            }
        }
        sleepMs(1000);  // more load after the last kill
        load.stop();
        long loadMs = elapsedMs(tLoad);

        const bool masterUp = d_->running() && d_->pid() == master;
        auto tSettle = Clock::now();
        bool inRange = itest::waitFor(
            [&] {
                size_t n = d_->workers().size();
                return n >= size_t(minServers) && n <= size_t(maxServers);
            },
            20000, 50);
        long settleMs = elapsedMs(tSettle);
        const size_t workersAfter = d_->workers().size();
        // Still serving after the storm: one more message on a new connection.
        std::string after;
        {
            Conn c = d_->connect();
            std::string reply;
            if (c.isOpen() &&
                c.request(eomRequest(runTag("crash-after"), client, 1, 1000), reply, 5000) ==
                    Conn::Status::Ok)
                after = itest::actionOf(reply);
        }

        LoadFigures f = figuresOf(load);
        if (after == "dunno") f.counted.add(1, 1000);
        std::vector<std::string> row = counterSums(client);
        const long long counted = std::stoll(row.at(0));
        const std::string log = d_->log();
        const size_t diedLogged = linesWith(log, "killed by signal 9").size();
        const size_t throttled = linesWith(log, "died before serving any request").size();
        const long long duplicates = counted - f.counted.count;

        reliability("testWorkerCrashUnderLoad",
                    {{"messages", str(f.messages)},
                     {"answered", str(f.answered)},
                     {"gave_up", str(f.gaveUp)},
                     {"resent_messages", str(f.resentMessages)},
                     {"resends", str(f.resends)},
                     {"closed_unanswered", str(f.noReply)},
                     {"closed_idle", str(f.idleClosed)},
                     {"hangs", str(f.hangs)},
                     {"connect_failures", str(f.connectFailed)},
                     {"max_attempts", str(f.maxAttempts)},
                     {"max_latency_ms", str(f.maxLatencyMs)},
                     {"kills", str(kills)},
                     {"kills_running", str(killBusy)},
                     {"deaths_logged", str(diedLogged)},
                     {"respawn_throttled", str(throttled)},
                     {"master_up", masterUp ? "yes" : "no"},
                     {"workers_after", str(workersAfter)},
                     {"settle_ms", str(settleMs)},
                     {"counted", str(counted)},
                     {"expected", str(f.counted.count)},
                     {"duplicates", str(duplicates)},
                     {"count_rcpt", row.at(1) + "/" + str(f.counted.rcpt)},
                     {"size", row.at(2) + "/" + str(f.counted.size)},
                     {"load_ms", str(loadMs)},
                     {"seed", str(seed)}});

        std::string what = "messages " + str(f.messages) + ", answered " + str(f.answered) +
                           ", resends " + str(f.resends) + ", kills " + str(kills) + " (" +
                           pidList(victims) + "), counted " + row.at(0) + "/" + row.at(1) + "/" +
                           row.at(2) + "/" + row.at(3) + ", expected " + f.counted.str() +
                           ", workers after " + str(workersAfter) + ", actions: " + actionsOf(f) +
                           "\n" + d_->logTail(40);
        CPPUNIT_ASSERT_MESSAGE(what, kills == 10);
        CPPUNIT_ASSERT_MESSAGE(what, f.messages >= 100);
        // Every message was answered eventually (dunno: the quota is never reached).
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.gaveUp);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.hangs);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, f.messages, f.answered);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::string("dunno"), actionsOf(f));
        // The master survived and the worker count is back in [min_servers, max_servers].
        CPPUNIT_ASSERT_MESSAGE(what, masterUp);
        CPPUNIT_ASSERT_MESSAGE(what, d_->running());
        CPPUNIT_ASSERT_MESSAGE(what, inRange);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::string("dunno"), after);
        CPPUNIT_ASSERT_MESSAGE(what, diedLogged >= 1);
        // Counted exactly once per answered message: none lost, none counted twice.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what + "\nduplicates (counted - answered)", 0LL, duplicates);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, str(f.counted.rcpt), row.at(1));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, str(f.counted.size), row.at(2));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, str(f.counted.sizeRcpt), row.at(3));
    }

    // 2. Reload under load: 8 kept-alive connections on a one-Action chain; 20 SIGHUPs 500 ms
    //    apart, a valid config with a new answer text and a broken one (syntax error, unknown
    //    key) in turn.
    void testReloadUnderLoad() {
        const std::string confPath = d_->path("mtpolicyd.conf");
        start(reloadConfig("reject config-0"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitWorkers(4, 3000));
        const pid_t master = d_->pid();

        Load load(
            d_->port(1), runTag("reload"), 8, 2,
            [](const Load::Msg& m) {
                return itest::makeRequest({{"instance", m.instance},
                                           {"client_address", "192.0.2.77"},
                                           {"sender", "someone@example.org"}});
            },
            10000);
        auto tLoad = Clock::now();
        load.start();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(),
                               itest::waitFor([&] { return load.answered() >= 100; }, 5000));

        int reloadsOk = 0, reloadsFailed = 0, reloadsSilent = 0, lastValid = 0;
        long slowestReloadMs = 0;
        std::vector<std::string> missingWhere;  // failed reloads whose file:line is not logged
        auto t0 = Clock::now();
        for (int i = 0; i < 20; ++i) {
            sleepUntil(t0 + std::chrono::milliseconds(500 * i));
            std::string text;
            int badLine = 0;
            bool valid = i % 2 == 0;
            if (valid) {
                lastValid = i / 2 + 1;
                text = d_->expand(reloadConfig("reject config-" + str(lastValid)));
            } else {
                // The broken line at the end; the rest is a valid config with an answer text
                // that must never be seen.
                text = d_->expand(reloadConfig("reject broken-" + str(i))) +
                       ((i / 2) % 2 == 0 ? "this is not valid\n" : "no_such_setting = 1;\n");
                badLine = lineCount(text);
            }
            itest::writeFile(confPath, text);
            size_t from = d_->logSize();
            auto tHup = Clock::now();
            CPPUNIT_ASSERT(d_->signal(SIGHUP));
            // Wait for the outcome, so that every SIGHUP is handled on its own file.
            bool done = itest::waitFor(
                [&] {
                    std::string l = d_->log().substr(std::min(from, d_->logSize()));
                    return contains(l, "configuration reloaded") || contains(l, "reload failed");
                },
                3000, 5);
            slowestReloadMs = std::max(slowestReloadMs, elapsedMs(tHup));
            std::string l = d_->log().substr(from);
            if (!done) {
                ++reloadsSilent;
            } else if (contains(l, "reload failed")) {
                ++reloadsFailed;
                std::string where = confPath + ":" + str(badLine);
                bool named = false;
                for (const auto& line : linesWith(l, "reload failed"))
                    named = named || contains(line, where);
                if (valid || !named) missingWhere.push_back("#" + str(i) + " " + where);
            } else {
                ++reloadsOk;
                if (!valid) missingWhere.push_back("#" + str(i) + " broken config was accepted");
            }
        }
        const std::string lastText = "reject config-" + str(lastValid);
        // Let the old workers finish; every connection ends up on the new ones.
        sleepMs(1000);
        auto tSettle = Clock::now();
        bool settled = itest::waitFor(
            [&] {
                for (int t = 0; t < 8; ++t)
                    if (load.lastAction(t) != lastText) return false;
                return true;
            },
            10000, 20);
        long settleMs = elapsedMs(tSettle);
        sleepMs(200);
        load.stop();
        long loadMs = elapsedMs(tLoad);

        std::vector<std::string> fresh;
        for (int i = 0; i < 5; ++i) {
            Conn c = d_->connect();
            std::string reply;
            fresh.push_back(c.isOpen() && c.request(itest::makeRequest(), reply, 3000) ==
                                              Conn::Status::Ok
                                ? itest::actionOf(reply)
                                : "(no answer)");
        }
        const bool masterUp = d_->running() && d_->pid() == master;

        LoadFigures f = figuresOf(load);
        // Which configs served, and did a connection ever go back to an older one?
        std::map<std::string, size_t> byText;
        size_t regressions = 0;
        {
            std::vector<int> lastVersion(8, -1);
            for (const auto& e : load.events()) {
                if (e.kind != Load::Kind::Answer) continue;
                ++byText[e.action];
                int v = -1;
                if (e.action.rfind("reject config-", 0) == 0)
                    v = std::atoi(e.action.c_str() + std::string("reject config-").size());
                if (v >= 0 && v < lastVersion[static_cast<size_t>(e.thread)]) ++regressions;
                lastVersion[static_cast<size_t>(e.thread)] =
                    std::max(v, lastVersion[static_cast<size_t>(e.thread)]);
            }
        }
        size_t unexpected = 0;
        for (const auto& kv : byText)
            if (kv.first.rfind("reject config-", 0) != 0) unexpected += kv.second;

        reliability("testReloadUnderLoad",
                    {{"sighups", "20"},
                     {"reloads_ok", str(reloadsOk)},
                     {"reloads_failed", str(reloadsFailed)},
                     {"reloads_unlogged", str(reloadsSilent)},
                     {"slowest_reload_ms", str(slowestReloadMs)},
                     {"requests", str(f.messages)},
                     {"answered", str(f.answered)},
                     {"gave_up", str(f.gaveUp)},
                     {"connect_failures", str(f.connectFailed)},
                     {"closed_idle", str(f.idleClosed)},
                     {"closed_unanswered", str(f.noReply)},
                     {"resends", str(f.resends)},
                     {"hangs", str(f.hangs)},
                     {"max_latency_ms", str(f.maxLatencyMs)},
                     {"configs_seen", str(byText.size())},
                     {"answers_from_broken", str(unexpected)},
                     {"version_regressions", str(regressions)},
                     {"settle_ms", str(settleMs)},
                     {"final", settled && fresh[0] == lastText ? "config-" + str(lastValid)
                                                               : "other"},
                     {"master_up", masterUp ? "yes" : "no"},
                     {"load_ms", str(loadMs)}});

        std::string served;
        for (const auto& kv : byText) served += "  '" + kv.first + "': " + str(kv.second) + "\n";
        std::string bad;
        for (const auto& m : missingWhere) bad += "  " + m + "\n";
        std::string what = "requests " + str(f.messages) + ", answered " + str(f.answered) +
                           ", reloads ok " + str(reloadsOk) + ", failed " + str(reloadsFailed) +
                           ", unlogged " + str(reloadsSilent) + ", connect failures " +
                           str(f.connectFailed) + ", closed idle " + str(f.idleClosed) +
                           ", closed unanswered " + str(f.noReply) + "\nserved:\n" + served +
                           "reload problems:\n" + bad + d_->logTail(30);
        // No connection refused, no request lost.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.connectFailed);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.gaveUp);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.hangs);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, f.messages, f.answered);
        CPPUNIT_ASSERT_MESSAGE(what, f.messages >= 500);
        // Every SIGHUP handled: 10 reloads, 10 failures logged with file:line.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, 0, reloadsSilent);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, 10, reloadsOk);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, 10, reloadsFailed);
        CPPUNIT_ASSERT_MESSAGE(what, missingWhere.empty());
        // Only valid configs served, the last one at the end, on old and new connections.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), unexpected);
        CPPUNIT_ASSERT_MESSAGE(what, settled);
        for (const auto& a : fresh) CPPUNIT_ASSERT_EQUAL_MESSAGE(what, lastText, a);
        CPPUNIT_ASSERT_MESSAGE(what, masterUp);
    }

    // 3. Database outage under load: the how-to chain with the default on_error, 8 client
    //    threads; mariadbd SIGKILLed, started again on the same socket and datadir ~3 s later.
    void testDatabaseOutageUnderLoad() {
        prepareDb();
        const std::string client = "203.0.113.43";
        start(globals(2, 4, 4, 1, 4) + connection() + howtoVhost());
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitWorkers(4, 3000));
        const std::vector<pid_t> workers0 = d_->workers();
        const pid_t master = d_->pid();

        Load load(d_->port(1), runTag("outage"), 8, 0, [&](const Load::Msg& m) {
            return eomRequest(m.instance, client, m.rcpt, m.size);
        });
        load.start();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(),
                               itest::waitFor([&] { return load.answered() >= 200; }, 10000));
        sleepMs(500);

        auto tKill = Clock::now();
        db_->kill();  // SIGKILL: a crash, for the clients and for InnoDB
        auto tDown = Clock::now();
        sleepMs(3000);
        auto tStartCall = Clock::now();
        std::string startError;
        try {
            db_->start();
        } catch (const std::exception& e) {
            startError = e.what();
        }
        auto tReady = Clock::now();
        CPPUNIT_ASSERT_MESSAGE("MariaDB did not start again: " + startError, startError.empty());

        // Service: the first answer after the server is back. Accounting: the counter grows.
        long long countAtReady = std::stoll(counterSums(client).at(0));
        long acctMs = -1;
        if (itest::waitFor(
                [&] { return std::stoll(counterSums(client).at(0)) > countAtReady; }, 5000, 10))
            acctMs = msBetween(tReady, Clock::now());
        Clock::time_point firstAt;
        long serviceMs = -1;
        if (itest::waitFor([&] { return load.firstAnswerAfter(tStartCall, firstAt); }, 5000))
            serviceMs = std::max(0L, msBetween(tReady, firstAt));
        sleepMs(1500);  // more load after the recovery
        load.stop();

        LoadFigures f = figuresOf(load);
        const size_t answeredDuring = load.countBetween(
            Load::Kind::Answer, tDown + std::chrono::milliseconds(300), tStartCall);
        const size_t closedDuring =
            load.countBetween(Load::Kind::NoReply, tKill, tReady) +
            load.countBetween(Load::Kind::IdleClosed, tKill, tReady);
        std::vector<std::string> row = counterSums(client);
        const long long counted = std::stoll(row.at(0));
        const long long duplicates = counted - f.counted.count;
        const std::string log = d_->log();
        const std::vector<pid_t> workers1 = d_->workers();
        const bool masterUp = d_->running() && d_->pid() == master;
        const size_t died = linesWith(log, " died").size();

        reliability("testDatabaseOutageUnderLoad",
                    {{"messages", str(f.messages)},
                     {"answered", str(f.answered)},
                     {"gave_up", str(f.gaveUp)},
                     {"outage_ms", str(msBetween(tKill, tReady))},
                     {"restart_ms", str(msBetween(tStartCall, tReady))},
                     {"answered_during_outage", str(answeredDuring)},
                     {"closed_during_outage", str(closedDuring)},
                     {"resent_messages", str(f.resentMessages)},
                     {"resends", str(f.resends)},
                     {"hangs", str(f.hangs)},
                     {"connect_failures", str(f.connectFailed)},
                     {"service_resumed_ms", str(serviceMs)},
                     {"accounting_resumed_ms", str(acctMs)},
                     {"workers_died", str(died)},
                     {"same_workers", pidList(workers0) == pidList(workers1) ? "yes" : "no"},
                     {"master_up", masterUp ? "yes" : "no"},
                     {"counted", str(counted)},
                     {"expected", str(f.counted.count)},
                     {"duplicates", str(duplicates)},
                     {"count_rcpt", row.at(1) + "/" + str(f.counted.rcpt)},
                     {"size", row.at(2) + "/" + str(f.counted.size)}});

        std::string what =
            "messages " + str(f.messages) + ", answered " + str(f.answered) + ", resends " +
            str(f.resends) + ", answered during outage " + str(answeredDuring) +
            ", closed during outage " + str(closedDuring) + ", service resumed " +
            str(serviceMs) + " ms, accounting resumed " + str(acctMs) + " ms, counted " +
            row.at(0) + "/" + row.at(1) + "/" + row.at(2) + "/" + row.at(3) + ", expected " +
            f.counted.str() + ", workers " + pidList(workers0) + " -> " + pidList(workers1) +
            "\n" + d_->logTail(40);
        // No worker died: same master, same workers.
        CPPUNIT_ASSERT_MESSAGE(what, masterUp);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, pidList(workers0), pidList(workers1));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), died);
        // The error policy: nothing answered while the database was away, connections closed
        // without an answer, every message answered (dunno) after resends.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), answeredDuring);
        CPPUNIT_ASSERT_MESSAGE(what, closedDuring >= 1);
        CPPUNIT_ASSERT_MESSAGE(what, f.resentMessages >= 1);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.gaveUp);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.hangs);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::string("dunno"), actionsOf(f));
        // Service and accounting resume within 2 s of the database accepting connections.
        CPPUNIT_ASSERT_MESSAGE(what, serviceMs >= 0 && serviceMs <= 2000);
        CPPUNIT_ASSERT_MESSAGE(what, acctMs >= 0 && acctMs <= 2000);
        // Nothing counted twice, nothing lost.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what + "\nduplicates (counted - answered)", 0LL, duplicates);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, str(f.counted.rcpt), row.at(1));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, str(f.counted.size), row.at(2));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, str(f.counted.sizeRcpt), row.at(3));
    }

    // 4. One worker SIGSTOPped for 5 s under load (8 kept-alive connections on a one-Action
    //    chain, min_servers 4), while new kept-alive connections keep arriving (as new smtpd
    //    processes would open them): the other workers keep answering; the requests held by
    //    the stopped worker are answered after SIGCONT; nothing is lost.
    void testStoppedWorkerUnderLoad() {
        start(globals(2, 4, 8, 1, 4) + R"(
virtual_hosts = (
  { name = "main"; port = "@PORT1@";
    plugins = ( { name = "act"; module = "Action"; action = "reject served"; } ); }
);
)");
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitWorkers(4, 3000));
        const pid_t master = d_->pid();
        const int port = d_->port(1);

        Load load(
            port, runTag("stop"), 8, 2,
            [](const Load::Msg& m) { return itest::makeRequest({{"instance", m.instance}}); },
            15000);
        load.start();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(),
                               itest::waitFor([&] { return load.answered() >= 200; }, 5000));
        sleepMs(300);

        // The victim: the worker holding thread 0's connection.
        pid_t victim = 0;
        std::set<int> held;
        for (int tries = 0; tries < 50 && victim == 0; ++tries) {
            int p0 = load.currentPort(0);
            for (pid_t w : d_->workers()) {
                std::set<int> ports = clientPortsHeldBy(w, port);
                if (p0 && ports.count(p0)) {
                    victim = w;
                    held = ports;
                }
            }
            if (!victim) sleepMs(20);
        }
        CPPUNIT_ASSERT_MESSAGE("cannot find the worker of thread 0's connection", victim > 0);
        std::set<int> stalled;  // threads whose connection the victim holds
        for (int t = 0; t < 8; ++t)
            if (held.count(load.currentPort(t))) stalled.insert(t);

        ContinueGuard guard{victim};
        auto tStop = Clock::now();
        CPPUNIT_ASSERT_EQUAL(0, ::kill(victim, SIGSTOP));
        const auto tContPlanned = tStop + std::chrono::milliseconds(5000);

        // New kept-alive connections while the victim is stopped: one every 250 ms, each
        // asked once and kept open.
        struct Probe {
            Clock::time_point sent, answeredAt;
            bool connected = false, answered = false;
        };
        std::vector<Probe> probes;
        std::mutex probeMu;
        std::atomic<long> backlogMax{0};
        std::string heldAtEnd;  // connections per running worker shortly before SIGCONT
        std::thread prober([&] {
            std::vector<Conn> keep;
            std::vector<std::thread> askers;
            for (int i = 0; i < 16; ++i) {
                sleepUntil(tStop + std::chrono::milliseconds(250 * (i + 1)));
                backlogMax = std::max(backlogMax.load(), acceptBacklog(port));
                askers.emplace_back([&, i] {
                    Probe p;
                    p.sent = Clock::now();
                    Conn c;
                    p.connected = c.connectTcp(port);
                    std::string reply;
                    if (p.connected &&
                        c.request(itest::makeRequest({{"instance", "probe." + str(i)}}), reply,
                                  12000) == Conn::Status::Ok) {
                        p.answered = true;
                        p.answeredAt = Clock::now();
                    }
                    std::lock_guard<std::mutex> lk(probeMu);
                    probes.push_back(p);
                    keep.push_back(std::move(c));
                });
            }
            for (auto& a : askers) a.join();
        });

        sleepUntil(tContPlanned - std::chrono::milliseconds(150));
        backlogMax = std::max(backlogMax.load(), acceptBacklog(port));
        for (pid_t w : d_->workers())
            heldAtEnd += (heldAtEnd.empty() ? "" : "/") +
                          str(clientPortsHeldBy(w, port).size()) + (w == victim ? "(stopped)" : "");
        sleepUntil(tContPlanned);
        auto tCont = Clock::now();
        const bool victimAliveStopped = itest::processAlive(victim);
        ::kill(victim, SIGCONT);
        guard.pid = 0;
        prober.join();
        sleepMs(1000);
        load.stop();

        // Answers during the stop (after a 500 ms grace) on connections the victim does not
        // hold, per thread.
        std::map<int, size_t> duringByThread;
        size_t duringOthers = 0, stalledAnsweredAfter = 0;
        for (const auto& e : load.events()) {
            if (e.kind != Load::Kind::Answer) continue;
            if (e.t >= tStop + std::chrono::milliseconds(500) && e.t < tCont &&
                !stalled.count(e.thread)) {
                ++duringByThread[e.thread];
                ++duringOthers;
            }
            if (stalled.count(e.thread) && e.t >= tCont &&
                e.t < tCont + std::chrono::milliseconds(1000))
                ++stalledAnsweredAfter;
        }
        size_t othersSilent = 0;
        for (int t = 0; t < 8; ++t)
            if (!stalled.count(t) && duringByThread[t] == 0) ++othersSilent;
        // Probes sent at least 1 s before SIGCONT must have been answered by another worker.
        size_t probesDue = 0, probesAnsweredByOthers = 0, probesAnswered = 0;
        long slowestProbeMs = 0;
        for (const auto& p : probes) {
            if (p.answered) {
                ++probesAnswered;
                slowestProbeMs = std::max(slowestProbeMs, msBetween(p.sent, p.answeredAt));
            }
            if (p.sent + std::chrono::milliseconds(1000) > tCont) continue;
            ++probesDue;
            if (p.answered && p.answeredAt < tCont) ++probesAnsweredByOthers;
        }
        LoadFigures f = figuresOf(load);
        const bool masterUp = d_->running() && d_->pid() == master;
        const bool victimAlive = itest::processAlive(victim);
        const std::string log = d_->log();
        const size_t died = linesWith(log, " died").size();

        reliability("testStoppedWorkerUnderLoad",
                    {{"stop_ms", str(msBetween(tStop, tCont))},
                     {"stalled_threads", str(stalled.size())},
                     {"victim_connections", str(held.size())},
                     {"answers_during_stop_others", str(duringOthers)},
                     {"other_threads_silent", str(othersSilent)},
                     {"probes", str(probes.size())},
                     {"probes_due", str(probesDue)},
                     {"probes_answered_during_stop", str(probesAnsweredByOthers)},
                     {"probes_answered", str(probesAnswered)},
                     {"slowest_probe_ms", str(slowestProbeMs)},
                     {"accept_backlog_max", str(backlogMax.load())},
                     {"connections_per_worker", heldAtEnd},
                     {"stalled_answered_after_cont", str(stalledAnsweredAfter)},
                     {"requests", str(f.messages)},
                     {"answered", str(f.answered)},
                     {"gave_up", str(f.gaveUp)},
                     {"hangs", str(f.hangs)},
                     {"resends", str(f.resends)},
                     {"workers_died", str(died)},
                     {"master_up", masterUp ? "yes" : "no"},
                     {"victim_alive", victimAlive && victimAliveStopped ? "yes" : "no"}});

        std::string what = "victim " + str(victim) + " held " + str(held.size()) +
                           " connections (" + str(stalled.size()) +
                           " load threads); answers by others during the stop " +
                           str(duringOthers) + ", silent other threads " + str(othersSilent) +
                           ", probes answered during the stop " + str(probesAnsweredByOthers) +
                           "/" + str(probesDue) + ", all probes answered " + str(probesAnswered) +
                           "/" + str(probes.size()) + ", waiting in the accept queue: up to " +
                           str(backlogMax.load()) + ", connections per worker before SIGCONT: " +
                           heldAtEnd + "\n" + d_->logTail(30);
        CPPUNIT_ASSERT_MESSAGE(what, masterUp);
        CPPUNIT_ASSERT_MESSAGE(what, victimAlive && victimAliveStopped);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), died);
        // The other workers kept answering their connections...
        CPPUNIT_ASSERT_MESSAGE(what, stalled.size() < 8);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), othersSilent);
        // ... and new connections.
        CPPUNIT_ASSERT_MESSAGE(what, probesDue >= 10);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, probesDue, probesAnsweredByOthers);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, probes.size(), probesAnswered);
        // Nothing lost: the stalled requests were answered after SIGCONT.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.gaveUp);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), f.hangs);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, f.messages, f.answered);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::string("reject served"), actionsOf(f));
    }

  private:
    // Globals: log and pid file, the log level, PORT1, worker counts; everything else default.
    static std::string globals(int logLevel, int minServers, int maxServers, int minSpare,
                               int maxSpare) {
        return "log_file = \"@LOG@\";\npid_file = \"@PID@\";\nlog_level = " + str(logLevel) +
               ";\nport = [ \"127.0.0.1:@PORT1@\" ];\nmin_servers = " + str(minServers) +
               "; max_servers = " + str(maxServers) +
               ";\nmin_spare_servers = " + str(minSpare) +
               "; max_spare_servers = " + str(maxSpare) + ";\n";
    }

    // The config of the reload test: a one-Action chain answering `action`.
    static std::string reloadConfig(const std::string& action) {
        return globals(2, 4, 8, 1, 4) + "request_timeout = 5;\nvirtual_hosts = (\n"
               "  { name = \"main\"; port = \"@PORT1@\";\n"
               "    plugins = ( { name = \"act\"; module = \"Action\"; action = " +
               confString(action) + "; } ); }\n);\n";
    }

    std::string connection() const { return itest::howtoConnection(*db_); }
    // The how-to with a threshold that is never reached (every message is answered dunno
    // and counted).
    static std::string howtoVhost() { return itest::howtoVhost(100000000); }

    // The shared MariaDB, running, with fresh how-to tables of sql/mysql.sql.
    void prepareDb() {
        db_ = &itest::sharedMariaDb();  // throws (the test fails) when MariaDB is missing
        db_->start();
        db_->rootExec(
            "DROP TABLE IF EXISTS relay_hosts, relay_policies, user_config, acct_client_address, "
            "acct_sasl_username, acct_instances");
        std::string file = srcdir() + "/sql/mysql.sql";
        std::string sql = itest::readFile(file);
        CPPUNIT_ASSERT_MESSAGE("cannot read " + file + " (set MTPOLICYD_SRCDIR)", !sql.empty());
        std::vector<std::string> stmts = sqlStatements(sql);
        CPPUNIT_ASSERT_MESSAGE(file, stmts.size() >= 5);
        for (const auto& s : stmts) db_->rootExec(s);
    }

    void start(const std::string& tmpl) {
        std::string conf = d_->writeConfig(tmpl);
        std::string err = d_->start(conf);
        CPPUNIT_ASSERT_MESSAGE(err, err.empty());
    }

    // SUM(count), SUM(count_rcpt), SUM(size), SUM(size_rcpt) of `key` in acct_client_address.
    std::vector<std::string> counterSums(const std::string& key) {
        auto rows = db_->rootQuery(
            "SELECT COALESCE(SUM(`count`), 0), COALESCE(SUM(count_rcpt), 0), "
            "COALESCE(SUM(size), 0), COALESCE(SUM(size_rcpt), 0) FROM acct_client_address "
            "WHERE `key` = '" +
            key + "'");
        if (rows.empty()) return {"0", "0", "0", "0"};
        return rows.at(0);
    }

    itest::MariaDb* db_ = nullptr;
    std::unique_ptr<Daemon> d_;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestFaults);
