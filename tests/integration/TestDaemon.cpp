// Integration tests: start the real mtpolicyd (master + pre-forked workers) from a private
// config in a temp dir and drive it over loopback TCP and a unix socket: keep-alive, virtual
// hosts, policy_context, malformed input, many idle connections, worker respawn, SIGHUP
// reload (broken, valid, and its warnings), workers ending with a killed master, SIGTERM,
// max_keepalive, timeouts, -t/--dump-config and policyd-client. Every test starts its own
// daemon; tearDown always stops it.
#include <cppunit/extensions/HelperMacros.h>
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <set>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "DaemonFixture.h"

using itest::Clock;
using itest::Conn;
using itest::Daemon;

namespace {

// Settings every test config shares: log and pid file in the temp dir.
std::string globals(int logLevel = 3) {
    return "\nlog_file = \"@LOG@\";\npid_file = \"@PID@\";\nlog_level = " +
           std::to_string(logLevel) + ";\n";
}
const std::string kGlobals = globals();

// One vhost on PORT1: "reject special sender" for sender=special@example.com, otherwise no
// plugin matches (dunno).
const std::string kSimpleVhost = R"(
virtual_hosts = (
  { name = "main"; port = "@PORT1@";
    plugins = (
      { name = "special"; module = "Condition"; key = "sender"; match = "special@example.com";
        action = "reject special sender"; }
    ); }
);
)";

// A one-vhost config on PORT1 whose chain always answers `action`; `extra` adds globals.
std::string actionConfig(const std::string& action,
                         const std::string& extra = "request_timeout = 3;") {
    std::string vhosts = R"(
virtual_hosts = (
  { name = "main"; port = "@PORT1@";
    plugins = ( { name = "act"; module = "Action"; action = "@ACTION@"; } ); }
);
)";
    vhosts.replace(vhosts.find("@ACTION@"), 8, action);
    return kGlobals + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
)" + extra +
           "\n" + vhosts;
}

// Established TCP connections to local `port` whose socket is open in process `pid`.
size_t tcpConnectionsOf(pid_t pid, int port) {
    char portHex[8];
    std::snprintf(portHex, sizeof portHex, "%04X", port);
    std::set<std::string> inodes;
    std::istringstream table(itest::readFile("/proc/" + std::to_string(pid) + "/net/tcp"));
    std::string line;
    std::getline(table, line);  // header
    while (std::getline(table, line)) {
        std::istringstream f(line);
        std::string sl, local, remote, st, queues, timer, retr, uid, timeout, inode;
        f >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode;
        if (st == "01" && local.size() > 5 && local.substr(local.size() - 4) == portHex) inodes.insert(inode);
    }
    size_t n = 0;
    std::string fdDir = "/proc/" + std::to_string(pid) + "/fd";
    if (DIR* dir = opendir(fdDir.c_str())) {
        while (dirent* e = readdir(dir)) {
            char target[256];
            ssize_t len = readlink((fdDir + "/" + e->d_name).c_str(), target, sizeof target - 1);
            if (len <= 0) continue;
            std::string t(target, static_cast<size_t>(len));
            if (t.rfind("socket:[", 0) == 0 && inodes.count(t.substr(8, t.size() - 9))) ++n;
        }
        closedir(dir);
    }
    return n;
}

std::string describe(Conn::Status st, const std::string& reply) {
    return std::string(itest::statusName(st)) + ", reply '" + reply + "'";
}

using itest::pidList;

// Number of lines in `text` (the line number of its last line when it ends with '\n').
int lineCount(const std::string& text) {
    return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

class TestDaemon : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestDaemon);
    CPPUNIT_TEST(testKeepAlive1000);
    CPPUNIT_TEST(testVirtualHostsTcpAndUnix);
    CPPUNIT_TEST(testPolicyContext);
    CPPUNIT_TEST(testLegacyConfigFile);
    CPPUNIT_TEST(testMalformedInput);
    CPPUNIT_TEST(testManyIdleConnections);
    CPPUNIT_TEST(testKilledWorkerReplaced);
    CPPUNIT_TEST(testReloadSyntaxError);
    CPPUNIT_TEST(testReloadUnknownKey);
    CPPUNIT_TEST(testReloadValid);
    CPPUNIT_TEST(testReloadLogsWarnings);
    CPPUNIT_TEST(testWorkersDieWithMaster);
    CPPUNIT_TEST(testSigterm);
    CPPUNIT_TEST(testMaxKeepalive);
    CPPUNIT_TEST(testMaxRequestsKeepsConnections);
    CPPUNIT_TEST(testSystemdNotify);
    CPPUNIT_TEST(testRequestTimeout);
    CPPUNIT_TEST(testKeepaliveTimeout);
    CPPUNIT_TEST(testWorkerCountAndPidFile);
    CPPUNIT_TEST(testSpareWorkersNotChurned);
    CPPUNIT_TEST(testCheckAndDumpConfig);
    CPPUNIT_TEST(testPolicydClientKeepalive);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override { d_ = std::make_unique<Daemon>(); }

    void tearDown() override {
        // The destructor stops the daemon (SIGTERM, then SIGKILL) and removes the temp dir.
        d_.reset();
    }

    // Starts the daemon from `tmpl`, failing the test with the log when it does not answer.
    void start(const std::string& tmpl, int readyPort = 0) {
        std::string conf = d_->writeConfig(tmpl);
        std::string err = d_->start(conf, readyPort);
        CPPUNIT_ASSERT_MESSAGE(err, err.empty());
    }

    Conn mustConnect(int port = 0) {
        Conn c = d_->connect(port);
        CPPUNIT_ASSERT_MESSAGE("connect to port " + std::to_string(port ? port : d_->port(1)) +
                                   ": " + std::strerror(c.lastErrno()),
                               c.isOpen());
        return c;
    }

    // Sends `req` on `c` and returns the action; fails the test when there is no reply.
    std::string ask(Conn& c, const std::string& req, int timeoutMs = 2000) {
        std::string reply;
        auto st = c.request(req, reply, timeoutMs);
        CPPUNIT_ASSERT_MESSAGE("no reply: " + describe(st, reply) + "\nlog:\n" + d_->logTail(),
                               st == Conn::Status::Ok);
        return itest::actionOf(reply);
    }

    // A fresh connection to `port`, one request, the action.
    std::string askNew(const std::string& req, int port = 0) {
        Conn c = mustConnect(port);
        return ask(c, req);
    }

    // 1. 1000 requests on one connection, each answered; the connection stays open; a
    //    request that no plugin matches answers action=dunno.
    void testKeepAlive1000() {
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
)" + kSimpleVhost);
        Conn c = mustConnect();
        const std::string special = itest::makeRequest({{"sender", "special@example.com"}});
        const std::string plain = itest::makeRequest({{"sender", "someone@example.com"}});
        for (int i = 0; i < 1000; ++i) {
            bool sp = i % 2 == 1;
            std::string reply;
            auto st = c.request(sp ? special : plain, reply, 2000);
            CPPUNIT_ASSERT_MESSAGE("request " + std::to_string(i) + ": " + describe(st, reply),
                                   st == Conn::Status::Ok);
            CPPUNIT_ASSERT_EQUAL(
                std::string(sp ? "action=reject special sender\n\n" : "action=dunno\n\n"), reply);
        }
        CPPUNIT_ASSERT_MESSAGE("the connection was closed after 1000 requests", c.peerOpen());
        // Still usable, and no stray bytes arrive.
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), ask(c, plain));
        std::string stray;
        CPPUNIT_ASSERT_EQUAL(Conn::Status::Timeout, c.waitClosed(100, &stray));
        CPPUNIT_ASSERT_EQUAL(std::string(), stray);
    }

    // 2. Two vhosts on two TCP ports and one on a unix socket, each with its own chain.
    void testVirtualHostsTcpAndUnix() {
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@", "127.0.0.1:@PORT2@", "@SOCK@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
virtual_hosts = (
  { name = "one"; port = "@PORT1@"; plugins = ( { name = "a1"; module = "Action"; action = "reject one"; } ); },
  { name = "two"; port = "@PORT2@"; plugins = ( { name = "a2"; module = "Action"; action = "defer two"; } ); },
  { name = "sock"; port = "@SOCK@"; plugins = ( { name = "a3"; module = "Action"; action = "hold sock"; } ); }
);
)");
        Conn c1 = mustConnect(d_->port(1));
        Conn c2 = mustConnect(d_->port(2));
        Conn c3 = d_->connectUnix();
        CPPUNIT_ASSERT_MESSAGE("connect to " + d_->sock() + ": " + std::strerror(c3.lastErrno()),
                               c3.isOpen());
        const std::string req = itest::makeRequest({{"client_address", "192.0.2.1"}});
        for (int round = 0; round < 3; ++round) {
            CPPUNIT_ASSERT_EQUAL(std::string("reject one"), ask(c1, req));
            CPPUNIT_ASSERT_EQUAL(std::string("defer two"), ask(c2, req));
            CPPUNIT_ASSERT_EQUAL(std::string("hold sock"), ask(c3, req));
        }
        CPPUNIT_ASSERT(d_->waitLog("sock: instance=", 1000));
        CPPUNIT_ASSERT(d_->waitLog("two: instance=", 1000));
    }

    // 3. vhost_by_policy_context: policy_context=<vhost name> selects that vhost; an empty or
    //    unknown context falls back to the vhost of the port.
    void testPolicyContext() {
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@", "127.0.0.1:@PORT2@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
vhost_by_policy_context = true;
virtual_hosts = (
  { name = "alpha"; port = "@PORT1@"; plugins = ( { name = "a"; module = "Action"; action = "reject alpha"; } ); },
  { name = "beta"; port = "@PORT2@"; plugins = ( { name = "b"; module = "Action"; action = "reject beta"; } ); },
  { name = "gamma"; port = "0"; plugins = ( { name = "g"; module = "Action"; action = "reject gamma"; } ); }
);
)");
        auto ctx = [](const std::string& v) { return itest::makeRequest({{"policy_context", v}}); };
        Conn c1 = mustConnect(d_->port(1));
        CPPUNIT_ASSERT_EQUAL(std::string("reject alpha"), ask(c1, itest::makeRequest()));
        CPPUNIT_ASSERT_EQUAL(std::string("reject beta"), ask(c1, ctx("beta")));
        CPPUNIT_ASSERT_EQUAL(std::string("reject gamma"), ask(c1, ctx("gamma")));
        CPPUNIT_ASSERT_EQUAL(std::string("reject alpha"), ask(c1, ctx("")));
        CPPUNIT_ASSERT_EQUAL(std::string("reject alpha"), ask(c1, ctx("no-such-vhost")));
        CPPUNIT_ASSERT_EQUAL(std::string("reject alpha"), ask(c1, ctx("alpha")));
        Conn c2 = mustConnect(d_->port(2));
        CPPUNIT_ASSERT_EQUAL(std::string("reject beta"), ask(c2, itest::makeRequest()));
        CPPUNIT_ASSERT_EQUAL(std::string("reject alpha"), ask(c2, ctx("alpha")));
        CPPUNIT_ASSERT_EQUAL(std::string("reject beta"), ask(c2, ctx("")));
        // Names are case-sensitive.
        CPPUNIT_ASSERT_EQUAL(std::string("reject beta"), ask(c2, ctx("ALPHA")));
        CPPUNIT_ASSERT_EQUAL(std::string("reject gamma"), ask(c2, ctx("gamma")));
    }

    // A configuration file of the Perl mtpolicyd 2.x (Config::General) is recognised and
    // served as it is: comma-separated ports, one <VirtualHost> each, plugins in file order;
    // its <SessionCache> is accepted with a warning in the log.
    void testLegacyConfigFile() {
        start(R"(# mtpolicyd 2.x format
log_file = "@LOG@"
pid_file = "@PID@"
log_level = 3
port = "127.0.0.1:@PORT1@,127.0.0.1:@PORT2@"
min_servers = 1
min_spare_servers = 1
max_spare_servers = 2
max_servers = 2
<SessionCache>
  module = "Memcached"
  expire = "300"
</SessionCache>
<VirtualHost @PORT1@>
  name = "main"
  <Plugin special>
    module = "Condition"
    key = "sender"
    match = "special@example.com"
    action = "reject special sender"
  </Plugin>
</VirtualHost>
<VirtualHost @PORT2@>
  name = "second"
  <Plugin first>
    module = Action
    action = reject from the second port
  </Plugin>
  <Plugin never>
    module = Action
    action = dunno
  </Plugin>
</VirtualHost>
)");
        CPPUNIT_ASSERT_EQUAL(std::string("reject special sender"),
                             askNew(itest::makeRequest({{"sender", "special@example.com"}})));
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), askNew(itest::makeRequest()));
        CPPUNIT_ASSERT_EQUAL(std::string("reject from the second port"),
                             askNew(itest::makeRequest(), d_->port(2)));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->log().find("<SessionCache> (module Memcached)") != std::string::npos);
    }

    // 4. Malformed input closes only that connection, without a reply; another open
    //    connection keeps being answered; the log names the reason.
    void testMalformedInput() {
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 1; min_spare_servers = 1; max_spare_servers = 1; max_servers = 1;
max_line_length = 1024;
)" + kSimpleVhost);
        const std::string ok = itest::makeRequest({{"sender", "special@example.com"}});
        Conn good = mustConnect();
        CPPUNIT_ASSERT_EQUAL(std::string("reject special sender"), ask(good, ok));

        struct Case {
            const char* what;
            std::string data;
            const char* logReason;
        };
        std::string nul = "request=smtpd_access_policy\nsender=a";
        nul += '\0';
        nul += "b@example.com\n\n";
        const std::vector<Case> cases = {
            {"line without '='", "request=smtpd_access_policy\nthis line has no equals sign\n\n",
             "line without '='"},
            {"NUL byte", nul, "NUL byte"},
            {"over-long line",
             "request=smtpd_access_policy\nsender=" + std::string(5000, 'x') + "\n\n",
             "line too long"},
            {"over-long line without newline", "sender=" + std::string(3000, 'y'), "line too long"},
        };
        for (const auto& cs : cases) {
            size_t logFrom = d_->logSize();
            Conn bad = mustConnect();
            bad.send(cs.data);  // may fail half-way when the server has already closed
            std::string got;
            auto st = bad.waitClosed(2000, &got);
            CPPUNIT_ASSERT_MESSAGE(
                std::string(cs.what) + ": connection not closed: " + describe(st, got),
                st == Conn::Status::Closed);
            CPPUNIT_ASSERT_MESSAGE(std::string(cs.what) + ": got a reply '" + got + "'",
                                   got.empty());
            CPPUNIT_ASSERT_MESSAGE(std::string(cs.what) + ": log does not name the reason '" +
                                       cs.logReason + "':\n" + d_->logTail(),
                                   d_->waitLog(cs.logReason, 1000, logFrom));
            // The other connection is untouched.
            CPPUNIT_ASSERT_MESSAGE(std::string("after ") + cs.what + ": good connection closed",
                                   good.peerOpen());
            CPPUNIT_ASSERT_EQUAL(std::string("reject special sender"), ask(good, ok));
        }
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), ask(good, itest::makeRequest()));
    }

    // 5. 500 idle keep-alive connections on 2 workers do not slow down other requests, and
    //    stay open and usable.
    void testManyIdleConnections() {
        const int kIdle = 500;
        rlim_t lim = itest::raiseFdLimit(kIdle + 200);
        CPPUNIT_ASSERT_MESSAGE("RLIMIT_NOFILE too low: " + std::to_string(lim), lim >= kIdle + 100);
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
max_requests = 0;
keepalive_timeout = 60;
)" + kSimpleVhost);
        std::vector<Conn> idle(kIdle);
        for (int i = 0; i < kIdle; ++i) {
            CPPUNIT_ASSERT_MESSAGE(
                "connect #" + std::to_string(i) + ": " + std::strerror(idle[i].lastErrno()),
                idle[i].connectTcp(d_->port(1)));
        }
        // One request on each, sent together and then collected: each becomes a used
        // keep-alive connection held by a worker.
        const std::string req = itest::makeRequest({{"sender", "special@example.com"}});
        for (int i = 0; i < kIdle; ++i) CPPUNIT_ASSERT(idle[i].send(req));
        for (int i = 0; i < kIdle; ++i) {
            std::string reply;
            auto st = idle[i].readReply(reply, 5000);
            CPPUNIT_ASSERT_MESSAGE("idle #" + std::to_string(i) + ": " + describe(st, reply),
                                   st == Conn::Status::Ok);
        }
        CPPUNIT_ASSERT_EQUAL(size_t(2), d_->workers().size());
        // Least-connections placement: the two workers hold about half each (with a
        // database-bound chain, that is what gives every connection its share of sessions).
        for (pid_t w : d_->workers()) {
            size_t held = tcpConnectionsOf(w, d_->port(1));
            CPPUNIT_ASSERT_MESSAGE("worker " + std::to_string(w) + " holds " + std::to_string(held) +
                                       " of " + std::to_string(kIdle) + " connections",
                                   held >= kIdle * 4 / 10 && held <= kIdle * 6 / 10);
        }

        // Requests on another connection, and on fresh connections, are answered promptly.
        Conn busy = mustConnect();
        long worst = 0;
        for (int i = 0; i < 100; ++i) {
            auto t0 = Clock::now();
            CPPUNIT_ASSERT_EQUAL(std::string("dunno"), ask(busy, itest::makeRequest(), 1000));
            worst = std::max(worst, itest::elapsedMs(t0));
        }
        for (int i = 0; i < 20; ++i) {
            auto t0 = Clock::now();
            CPPUNIT_ASSERT_EQUAL(std::string("dunno"), askNew(itest::makeRequest()));
            worst = std::max(worst, itest::elapsedMs(t0));
        }
        CPPUNIT_ASSERT_MESSAGE("slowest answer took " + std::to_string(worst) + " ms", worst < 200);

        // The 500 are still open: a sample of them is answered.
        for (int i = 0; i < kIdle; i += 10) {
            CPPUNIT_ASSERT_MESSAGE("idle #" + std::to_string(i) + " closed", idle[i].peerOpen());
            CPPUNIT_ASSERT_EQUAL(std::string("reject special sender"), ask(idle[i], req));
        }
        int stillOpen = 0;
        for (auto& c : idle) stillOpen += c.peerOpen() ? 1 : 0;
        CPPUNIT_ASSERT_EQUAL(kIdle, stillOpen);
    }

    // 6. A worker killed with SIGKILL is replaced; requests are answered meanwhile.
    void testKilledWorkerReplaced() {
        start(actionConfig("reject alive"));
        CPPUNIT_ASSERT_MESSAGE("workers: " + pidList(d_->workers()), d_->waitWorkers(2, 3000));
        // Kill a worker that has served nothing (not the one that answered the start-up
        // probe): the master may throttle its respawn, which is the slower case.
        std::vector<pid_t> before = d_->workers();
        pid_t victim = before.front();
        for (pid_t w : before)
            if (d_->log().find("mtpolicyd[" + std::to_string(w) +
                               "]: warning: main: instance=readiness-probe") == std::string::npos)
                victim = w;
        CPPUNIT_ASSERT_EQUAL(0, ::kill(victim, SIGKILL));

        auto t0 = Clock::now();
        int answered = 0, failed = 0;
        std::string lastFailure;
        bool replaced = false;
        while (itest::elapsedMs(t0) < 10000) {
            Conn c = d_->connect();
            std::string reply;
            auto st =
                c.isOpen() ? c.request(itest::makeRequest(), reply, 2000) : Conn::Status::Error;
            if (st == Conn::Status::Ok && itest::actionOf(reply) == "reject alive") {
                ++answered;
            } else {
                ++failed;
                lastFailure = describe(st, reply);
            }
            std::vector<pid_t> now = d_->workers();
            if (now.size() == 2 && std::find(now.begin(), now.end(), victim) == now.end()) {
                replaced = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        if (std::getenv("TEST_VERBOSE"))
            std::cout << "  respawn: " << itest::elapsedMs(t0) << " ms, " << answered
                      << " answered\n";
        CPPUNIT_ASSERT_MESSAGE("worker " + std::to_string(victim) +
                                   " not replaced within 10 s; workers: " + pidList(d_->workers()) +
                                   "\nlog:\n" + d_->logTail(),
                               replaced);
        CPPUNIT_ASSERT_MESSAGE(
            std::to_string(failed) + " requests failed during the respawn, last: " + lastFailure,
            failed == 0);
        CPPUNIT_ASSERT(answered > 0);
        CPPUNIT_ASSERT(!itest::processAlive(victim));
        CPPUNIT_ASSERT(d_->waitLog("killed by signal 9", 1000));
        // The new worker serves too.
        for (int i = 0; i < 10; ++i)
            CPPUNIT_ASSERT_EQUAL(std::string("reject alive"), askNew(itest::makeRequest()));
        CPPUNIT_ASSERT(d_->waitWorkers(2, 100));
    }

    // 7. SIGHUP with a broken config keeps the old chain; the log names the error's file:line.
    void reloadBroken(const std::string& brokenLine, const std::string& mustMention) {
        start(actionConfig("reject old chain"));
        pid_t master = d_->pid();
        Conn old = mustConnect();
        CPPUNIT_ASSERT_EQUAL(std::string("reject old chain"), ask(old, itest::makeRequest()));

        // The new file: the new chain's action plus the broken line at its end.
        std::string text = d_->expand(actionConfig("reject new chain")) + brokenLine + "\n";
        int errLine = lineCount(text);
        std::string conf = d_->path("mtpolicyd.conf");
        itest::writeFile(conf, text);
        size_t logFrom = d_->logSize();
        CPPUNIT_ASSERT(d_->signal(SIGHUP));
        CPPUNIT_ASSERT_MESSAGE("no 'reload failed' in the log:\n" + d_->logTail(),
                               d_->waitLog("reload failed", 3000, logFrom));
        std::string log = d_->log().substr(logFrom);
        std::string where = conf + ":" + std::to_string(errLine);
        CPPUNIT_ASSERT_MESSAGE("log does not name " + where + ":\n" + log,
                               log.find(where) != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE("log does not mention " + mustMention + ":\n" + log,
                               log.find(mustMention) != std::string::npos);

        // Same master, still serving the old chain on old and new connections.
        CPPUNIT_ASSERT(d_->running());
        CPPUNIT_ASSERT_EQUAL(master, d_->pid());
        CPPUNIT_ASSERT_EQUAL(static_cast<long>(master),
                             std::stol("0" + itest::readFile(d_->pidPath())));
        CPPUNIT_ASSERT_EQUAL(std::string("reject old chain"), ask(old, itest::makeRequest()));
        for (int i = 0; i < 5; ++i)
            CPPUNIT_ASSERT_EQUAL(std::string("reject old chain"), askNew(itest::makeRequest()));
        CPPUNIT_ASSERT(d_->running());
        CPPUNIT_ASSERT_EQUAL(size_t(2), d_->workers().size());
    }

    void testReloadSyntaxError() { reloadBroken("this is not valid", "syntax error"); }
    void testReloadUnknownKey() { reloadBroken("no_such_setting = 1;", "no_such_setting"); }

    // 8. SIGHUP with a valid changed config: new connections get the new chain within a few
    //    seconds, and no connection attempt is refused during the reload.
    void testReloadValid() {
        start(actionConfig("reject old chain"));
        CPPUNIT_ASSERT(d_->waitWorkers(2, 3000));
        std::vector<pid_t> oldWorkers = d_->workers();
        const int port = d_->port(1);

        std::atomic<bool> stop{false};
        std::atomic<int> attempts{0}, refused{0}, failed{0}, sawOld{0}, sawNew{0};
        std::string lastFailure;  // written by the thread only; read after join
        std::thread hammer([&] {
            while (!stop.load()) {
                ++attempts;
                Conn c;
                if (!c.connectTcp(port)) {
                    if (c.lastErrno() == ECONNREFUSED)
                        ++refused;
                    else
                        ++failed;
                    lastFailure = std::string("connect: ") + std::strerror(c.lastErrno());
                    continue;
                }
                std::string reply;
                auto st = c.request(itest::makeRequest(), reply, 3000);
                std::string a = itest::actionOf(reply);
                if (st == Conn::Status::Ok && a == "reject old chain")
                    ++sawOld;
                else if (st == Conn::Status::Ok && a == "reject new chain")
                    ++sawNew;
                else {
                    ++failed;
                    lastFailure = describe(st, reply);
                }
                c.close();
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
        });
        struct Joiner {
            std::atomic<bool>& stop;
            std::thread& t;
            ~Joiner() {
                stop = true;
                if (t.joinable()) t.join();
            }
        } joiner{stop, hammer};

        itest::waitFor([&] { return sawOld.load() >= 20; }, 2000);
        d_->writeConfig(actionConfig("reject new chain"));
        size_t logFrom = d_->logSize();
        CPPUNIT_ASSERT(d_->signal(SIGHUP));
        auto t0 = Clock::now();
        bool switched = itest::waitFor(
            [&] {
                Conn c = d_->connect();
                std::string reply;
                return c.isOpen() &&
                       c.request(itest::makeRequest(), reply, 2000) == Conn::Status::Ok &&
                       itest::actionOf(reply) == "reject new chain";
            },
            5000, 20);
        long switchMs = itest::elapsedMs(t0);
        // Let the old workers finish while connections keep coming.
        bool oldGone = itest::waitFor(
            [&] {
                for (pid_t p : oldWorkers)
                    if (itest::processAlive(p)) return false;
                return true;
            },
            5000);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        stop = true;
        hammer.join();

        std::string summary = "attempts " + std::to_string(attempts) + ", refused " +
                              std::to_string(refused) + ", failed " + std::to_string(failed) +
                              " (last: " + lastFailure + "), old " + std::to_string(sawOld) +
                              ", new " + std::to_string(sawNew);
        if (std::getenv("TEST_VERBOSE"))
            std::cout << "  reload: " << summary << ", switch " << switchMs << " ms\n";
        CPPUNIT_ASSERT_MESSAGE("new chain not served within 5 s\n" + d_->logTail(), switched);
        CPPUNIT_ASSERT_MESSAGE("switch took " + std::to_string(switchMs) + " ms", switchMs < 5000);
        CPPUNIT_ASSERT_MESSAGE("log: " + d_->logTail(),
                               d_->waitLog("configuration reloaded", 1000, logFrom));
        CPPUNIT_ASSERT_MESSAGE("old workers still running: " + pidList(oldWorkers), oldGone);
        CPPUNIT_ASSERT_MESSAGE(summary, refused == 0);
        CPPUNIT_ASSERT_MESSAGE(summary, failed == 0);
        CPPUNIT_ASSERT_MESSAGE(summary, sawNew > 0);
        for (int i = 0; i < 5; ++i)
            CPPUNIT_ASSERT_EQUAL(std::string("reject new chain"), askNew(itest::makeRequest()));
        CPPUNIT_ASSERT(d_->waitWorkers(2, 3000));
    }

    // 8b. A reload logs the new configuration's warnings (accepted but unused settings of a
    //     legacy file) at warning level, as the start does.
    void testReloadLogsWarnings() {
        start(actionConfig("reject old chain"));
        d_->writeConfig(R"(# mtpolicyd 2.x format
log_file = "@LOG@"
pid_file = "@PID@"
log_level = 3
port = "127.0.0.1:@PORT1@"
min_servers = 2
min_spare_servers = 1
max_spare_servers = 2
max_servers = 2
<SessionCache>
  module = "Memcached"
  expire = "300"
</SessionCache>
<VirtualHost @PORT1@>
  name = "main"
  <Plugin act>
    module = "Action"
    action = "reject new chain"
  </Plugin>
</VirtualHost>
)");
        size_t logFrom = d_->logSize();
        CPPUNIT_ASSERT(d_->signal(SIGHUP));
        CPPUNIT_ASSERT_MESSAGE("log: " + d_->logTail(),
                               d_->waitLog("configuration reloaded", 3000, logFrom));
        std::string log = d_->log().substr(logFrom);
        size_t at = log.find("<SessionCache> (module Memcached)");
        CPPUNIT_ASSERT_MESSAGE("no SessionCache warning after the reload:\n" + log, at != std::string::npos);
        size_t lineStart = log.rfind('\n', at);
        std::string line = log.substr(lineStart == std::string::npos ? 0 : lineStart + 1,
                                      log.find('\n', at) - (lineStart == std::string::npos ? 0 : lineStart + 1));
        CPPUNIT_ASSERT_MESSAGE("not at warning level: " + line, line.find(" warning: ") != std::string::npos);
        CPPUNIT_ASSERT_EQUAL(size_t(1), itest::countOf(log, "<SessionCache> (module Memcached)"));
        CPPUNIT_ASSERT_MESSAGE("the reloaded legacy chain is not served:\n" + d_->logTail(), itest::waitFor(
            [&] {
                Conn c = d_->connect();
                std::string reply;
                return c.isOpen() && c.request(itest::makeRequest(), reply, 2000) == Conn::Status::Ok &&
                       itest::actionOf(reply) == "reject new chain";
            },
            5000));
    }

    // 8c. Workers do not outlive a master killed with SIGKILL (PR_SET_PDEATHSIG): each gets
    //     SIGTERM from the kernel and, idle, exits at once.
    void testWorkersDieWithMaster() {
        start(actionConfig("reject alive"));
        CPPUNIT_ASSERT_MESSAGE("workers: " + pidList(d_->workers()), d_->waitWorkers(2, 3000));
        CPPUNIT_ASSERT_EQUAL(std::string("reject alive"), askNew(itest::makeRequest()));
        std::vector<pid_t> workers = d_->workers();
        const pid_t pgrp = d_->pid();
        // Whatever is left is killed here (by pid, and only while it is still in the daemon's
        // process group), also when an assertion fails; the fixture's stop() does the same.
        struct Reaper {
            const std::vector<pid_t>& pids;
            pid_t pgrp;
            ~Reaper() {
                for (pid_t p : pids) {
                    itest::ProcStat st;
                    if (itest::readProcStat(p, st) && st.pgrp == pgrp && st.state != 'Z') ::kill(p, SIGKILL);
                }
            }
        } reaper{workers, pgrp};

        CPPUNIT_ASSERT(d_->signal(SIGKILL));
        CPPUNIT_ASSERT(d_->waitExit(2000));
        auto t0 = Clock::now();
        bool gone = itest::waitFor(
            [&] {
                for (pid_t p : workers)
                    if (itest::processAlive(p)) return false;
                return true;
            },
            2000);
        std::vector<pid_t> left;
        for (pid_t p : workers)
            if (itest::processAlive(p)) left.push_back(p);
        CPPUNIT_ASSERT_MESSAGE("workers still running " + std::to_string(itest::elapsedMs(t0)) +
                                   " ms after the master was killed: " + pidList(left) + "\n" + d_->logTail(),
                               gone);
        CPPUNIT_ASSERT_MESSAGE("processes left: " + pidList(d_->allProcesses()), d_->allProcesses().empty());
    }

    // 9. SIGTERM: master and workers exit, the pid file and the unix socket are removed.
    void testSigterm() {
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@", "@SOCK@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
request_timeout = 3;
virtual_hosts = (
  { name = "tcp"; port = "@PORT1@"; plugins = ( { name = "a"; module = "Action"; action = "reject tcp"; } ); },
  { name = "sock"; port = "@SOCK@"; plugins = ( { name = "b"; module = "Action"; action = "reject sock"; } ); }
);
)");
        CPPUNIT_ASSERT(d_->waitWorkers(2, 3000));
        std::vector<pid_t> procs = d_->allProcesses();
        CPPUNIT_ASSERT_EQUAL(size_t(3), procs.size());
        CPPUNIT_ASSERT(itest::fileExists(d_->pidPath()));
        CPPUNIT_ASSERT(itest::fileExists(d_->sock()));
        // An idle keep-alive connection does not hold up the stop.
        Conn idle = d_->connectUnix();
        CPPUNIT_ASSERT(idle.isOpen());
        CPPUNIT_ASSERT_EQUAL(std::string("reject sock"), ask(idle, itest::makeRequest()));

        auto t0 = Clock::now();
        CPPUNIT_ASSERT(d_->signal(SIGTERM));
        CPPUNIT_ASSERT_MESSAGE("master did not exit within 5 s\n" + d_->logTail(),
                               d_->waitExit(5000));
        long ms = itest::elapsedMs(t0);
        CPPUNIT_ASSERT_MESSAGE("exit status " + std::to_string(d_->exitStatus()),
                               WIFEXITED(d_->exitStatus()) && WEXITSTATUS(d_->exitStatus()) == 0);
        CPPUNIT_ASSERT_MESSAGE("stop took " + std::to_string(ms) + " ms", ms < 3000);
        for (pid_t p : procs)
            CPPUNIT_ASSERT_MESSAGE("process " + std::to_string(p) + " still running",
                                   !itest::processAlive(p));
        CPPUNIT_ASSERT_MESSAGE("left: " + pidList(d_->allProcesses()), d_->allProcesses().empty());
        CPPUNIT_ASSERT_MESSAGE("pid file left", !itest::fileExists(d_->pidPath()));
        CPPUNIT_ASSERT_MESSAGE("unix socket left", !itest::fileExists(d_->sock()));
        CPPUNIT_ASSERT_EQUAL(Conn::Status::Closed, idle.waitClosed(1000));
        Conn after;
        CPPUNIT_ASSERT(!after.connectTcp(d_->port(1)));
        CPPUNIT_ASSERT(d_->log().find("Server closing!") != std::string::npos);
    }

    // 10. max_keepalive = 3: the server closes the connection after the third answer.
    void testMaxKeepalive() {
        start(actionConfig("reject three", "request_timeout = 3; max_keepalive = 3;"));
        Conn c = mustConnect();
        for (int i = 0; i < 3; ++i)
            CPPUNIT_ASSERT_EQUAL(std::string("reject three"), ask(c, itest::makeRequest()));
        std::string got;
        auto st = c.waitClosed(2000, &got);
        CPPUNIT_ASSERT_MESSAGE("after 3 answers: " + describe(st, got), st == Conn::Status::Closed);
        CPPUNIT_ASSERT_EQUAL(std::string(), got);
        // A new connection again gets three.
        Conn c2 = mustConnect();
        for (int i = 0; i < 3; ++i)
            CPPUNIT_ASSERT_EQUAL(std::string("reject three"), ask(c2, itest::makeRequest()));
        CPPUNIT_ASSERT_EQUAL(Conn::Status::Closed, c2.waitClosed(2000));
    }

    // 10b. max_requests (connections per worker): the worker that reached it takes no new
    //      connections but keeps serving the ones it has (closing a kept-alive connection would
    //      cost Postfix a one-second retry delay), and exits when their clients have closed them.
    void testMaxRequestsKeepsConnections() {
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 1; min_spare_servers = 0; max_spare_servers = 1; max_servers = 3;
max_requests = 3; request_timeout = 3; keepalive_timeout = 60;
virtual_hosts = (
  { name = "main"; port = "@PORT1@";
    plugins = ( { name = "act"; module = "Action"; action = "dunno"; } ); }
);
)");
        std::vector<pid_t> first = d_->workers();
        CPPUNIT_ASSERT_EQUAL(size_t(1), first.size());
        std::vector<Conn> held(3);
        for (auto& c : held) {
            c = mustConnect();
            CPPUNIT_ASSERT_EQUAL(std::string("dunno"), ask(c, itest::makeRequest()));
        }
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitLog("max_requests reached", 2000));
        // A replacement starts; the old worker stays while its connections are open.
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), itest::waitFor([&] { return d_->workers().size() == 2; }, 3000));
        Conn fresh = mustConnect();
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), ask(fresh, itest::makeRequest()));
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        for (size_t i = 0; i < held.size(); ++i) {
            CPPUNIT_ASSERT_MESSAGE("held #" + std::to_string(i) + " was closed", held[i].peerOpen());
            CPPUNIT_ASSERT_EQUAL(std::string("dunno"), ask(held[i], itest::makeRequest()));
        }
        CPPUNIT_ASSERT(itest::processAlive(first[0]));
        for (auto& c : held) c.close();
        CPPUNIT_ASSERT_MESSAGE("the old worker did not exit after its clients left",
                               itest::waitFor([&] { return !itest::processAlive(first[0]); }, 3000));
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), ask(fresh, itest::makeRequest()));
    }

    // 10c. Under systemd (Type=notify) the master reports READY=1 with its pid once every
    //      port is bound and the workers are started, RELOADING=1/READY=1 around a reload and
    //      STOPPING=1 at shutdown, on the datagram socket named by $NOTIFY_SOCKET.
    void testSystemdNotify() {
        std::string sockPath = d_->path("notify.sock");
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CPPUNIT_ASSERT(fd >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sockPath.c_str());
        CPPUNIT_ASSERT_EQUAL(0, bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
        auto receive = [&](int timeoutMs) {
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, timeoutMs) != 1) return std::string("<nothing>");
            char buf[512];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("<error>");
        };
        setenv("NOTIFY_SOCKET", sockPath.c_str(), 1);
        std::string err = d_->start(d_->writeConfig(actionConfig("dunno")));
        unsetenv("NOTIFY_SOCKET");
        CPPUNIT_ASSERT_MESSAGE(err, err.empty());
        std::string ready = receive(3000);
        CPPUNIT_ASSERT_MESSAGE(ready, ready.find("READY=1") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(ready, ready.find("MAINPID=" + std::to_string(d_->pid())) != std::string::npos);
        CPPUNIT_ASSERT(d_->signal(SIGHUP));
        CPPUNIT_ASSERT_EQUAL(std::string("RELOADING=1"), receive(3000));
        CPPUNIT_ASSERT_EQUAL(std::string("READY=1"), receive(3000));
        CPPUNIT_ASSERT(d_->signal(SIGTERM));
        CPPUNIT_ASSERT_EQUAL(std::string("STOPPING=1"), receive(3000));
        CPPUNIT_ASSERT(d_->waitExit(10000));
        ::close(fd);
    }

    // 11a. request_timeout = 1: a client that sends half a request and stops is disconnected
    //      without a reply after about a second.
    void testRequestTimeout() {
        start(actionConfig("reject timely", "request_timeout = 1; keepalive_timeout = 30;"));
        Conn other = mustConnect();
        const std::string half = "request=smtpd_access_policy\nsender=a@example.com\n";
        // On a used keep-alive connection, and as the first request of a new one.
        for (int round = 0; round < 2; ++round) {
            Conn c = mustConnect();
            if (round == 0)
                CPPUNIT_ASSERT_EQUAL(std::string("reject timely"), ask(c, itest::makeRequest()));
            size_t logFrom = d_->logSize();
            CPPUNIT_ASSERT(c.send(half));
            auto t0 = Clock::now();
            std::string got;
            auto st = c.waitClosed(4000, &got);
            long ms = itest::elapsedMs(t0);
            CPPUNIT_ASSERT_MESSAGE("round " + std::to_string(round) + ": " + describe(st, got),
                                   st == Conn::Status::Closed);
            CPPUNIT_ASSERT_EQUAL(std::string(), got);
            CPPUNIT_ASSERT_MESSAGE("closed after " + std::to_string(ms) + " ms",
                                   ms >= 800 && ms <= 2500);
            CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitLog("request timed out", 1000, logFrom));
            CPPUNIT_ASSERT_EQUAL(std::string("reject timely"), ask(other, itest::makeRequest()));
        }
    }

    // 11b. keepalive_timeout = 1: an idle connection is closed after about a second; a
    //      connection that keeps sending requests stays open.
    void testKeepaliveTimeout() {
        start(actionConfig("reject idle", "request_timeout = 5; keepalive_timeout = 1;"));
        Conn used = mustConnect();
        CPPUNIT_ASSERT_EQUAL(std::string("reject idle"), ask(used, itest::makeRequest()));
        Conn fresh = mustConnect();
        size_t logFrom = d_->logSize();
        auto t0 = Clock::now();
        std::string got;
        auto st = used.waitClosed(4000, &got);
        long ms = itest::elapsedMs(t0);
        CPPUNIT_ASSERT_MESSAGE("used connection: " + describe(st, got), st == Conn::Status::Closed);
        CPPUNIT_ASSERT_EQUAL(std::string(), got);
        CPPUNIT_ASSERT_MESSAGE("used connection closed after " + std::to_string(ms) + " ms",
                               ms >= 800 && ms <= 2500);
        st = fresh.waitClosed(4000 - static_cast<int>(itest::elapsedMs(t0)), &got);
        ms = itest::elapsedMs(t0);
        CPPUNIT_ASSERT_MESSAGE("connection without a request: " + describe(st, got),
                               st == Conn::Status::Closed);
        CPPUNIT_ASSERT_MESSAGE("fresh connection closed after " + std::to_string(ms) + " ms",
                               ms <= 2500);
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitLog("keepalive timeout", 1000, logFrom));

        // Requests every 400 ms keep a connection open well beyond the idle timeout.
        Conn active = mustConnect();
        for (int i = 0; i < 6; ++i) {
            CPPUNIT_ASSERT_EQUAL(std::string("reject idle"), ask(active, itest::makeRequest()));
            std::this_thread::sleep_for(std::chrono::milliseconds(400));
        }
        CPPUNIT_ASSERT_EQUAL(std::string("reject idle"), ask(active, itest::makeRequest()));
    }

    // 12a. Spare workers are stopped as Net::Server::PreFork stops them: not within 10 s of a
    //      worker being started. A load that keeps workers busy and idle in quick turns would
    //      otherwise make the master fork and stop workers all the time, each new one opening
    //      its own database connection. The chain is made slow (~0.3 s) by an SQLite query.
    void testSpareWorkersNotChurned() {
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 1; min_spare_servers = 1; max_spare_servers = 1; max_servers = 3;
connections = { db = { module = "Sql"; dsn = "dbi:SQLite:dbname=@DIR@/slow.sqlite"; }; };
virtual_hosts = (
  { name = "main"; port = "@PORT1@";
    plugins = (
      { name = "slow"; module = "SqlUserConfig"; field = "client_address";
        sql_query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT '{}' FROM c WHERE x = 1000000 AND ? IS NOT NULL"; },
      { name = "act"; module = "Action"; action = "dunno"; }
    ); }
);
)");
        CPPUNIT_ASSERT_MESSAGE("workers: " + pidList(d_->workers()), d_->waitWorkers(1, 3000));
        // The only worker is busy: the master starts a spare one (min_spare_servers 1).
        Conn c = mustConnect();
        auto until = Clock::now() + std::chrono::seconds(8);
        // (A new instance each time: SqlUserConfig loads once per message.)
        for (int n = 0; Clock::now() < until && d_->workers().size() < 2; ++n)
            CPPUNIT_ASSERT_EQUAL(std::string("dunno"),
                                 ask(c, itest::makeRequest({{"client_address", "192.0.2.1"},
                                                          {"instance", "spare." + std::to_string(n)}})));
        CPPUNIT_ASSERT_MESSAGE("no spare worker started under load: " + pidList(d_->workers()) + "\n" +
                                   d_->logTail(),
                               d_->workers().size() == 2);
        // Both are idle now, one more than max_spare_servers, but the new one was just started:
        // the count stays at 2 for the next 5 s ...
        bool churned = itest::waitFor([&] { return d_->workers().size() != 2; }, 5000, 50);
        CPPUNIT_ASSERT_MESSAGE("a spare worker was stopped within 5 s of its start: " + pidList(d_->workers()),
                               !churned);
        // ... and the surplus worker is stopped once 10 s have passed.
        CPPUNIT_ASSERT_MESSAGE("the spare worker was not stopped: " + pidList(d_->workers()) + "\n" +
                                   d_->logTail(),
                               itest::waitFor([&] { return d_->workers().size() == 1; }, 9000));
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), ask(c, itest::makeRequest({{"instance", "spare.last"}})));
    }

    // 12. min_servers = 3 runs 3 workers; the pid file holds the master's pid.
    void testWorkerCountAndPidFile() {
        start(kGlobals + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 3; min_spare_servers = 1; max_spare_servers = 3; max_servers = 4;
)" + kSimpleVhost);
        CPPUNIT_ASSERT_MESSAGE("workers: " + pidList(d_->workers()), d_->waitWorkers(3, 3000));
        // Still 3 after the master's next supervision round.
        bool stable = !itest::waitFor([&] { return d_->workers().size() != 3; }, 1200, 50);
        CPPUNIT_ASSERT_MESSAGE("workers: " + pidList(d_->workers()), stable);
        for (pid_t w : d_->workers()) {
            itest::ProcStat st;
            CPPUNIT_ASSERT(itest::readProcStat(w, st));
            CPPUNIT_ASSERT_EQUAL(d_->pid(), st.ppid);
        }
        std::string pidText = itest::readFile(d_->pidPath());
        CPPUNIT_ASSERT_MESSAGE("pid file: '" + pidText + "'", !pidText.empty());
        CPPUNIT_ASSERT_EQUAL(static_cast<long>(d_->pid()), std::stol(pidText));
        CPPUNIT_ASSERT_EQUAL(std::to_string(d_->pid()) + "\n", pidText);
    }

    // 13. -t checks a config (exit 0 / 1 with file:line and key), --dump-config prints the
    //     defaults; neither starts a server.
    void testCheckAndDumpConfig() {
        const std::string bin = itest::mtpolicydBin();
        const std::string minimal = R"(port = [ "127.0.0.1:@PORT1@" ];
pid_file = "@PID@";
virtual_hosts = (
  { name = "main"; port = "@PORT1@"; plugins = ( { name = "a"; module = "Action"; action = "dunno"; } ); }
);
)";
        std::string good = d_->writeConfig(minimal, "good.conf");
        auto r = itest::runCommand({bin, "-t", "-c", good}, "", 5000);
        CPPUNIT_ASSERT_MESSAGE("-t good: exit " + std::to_string(r.exitCode) + ", stderr: " + r.err,
                               r.exitCode == 0);
        CPPUNIT_ASSERT(!itest::fileExists(d_->pidPath()));
        Conn probe;
        CPPUNIT_ASSERT_MESSAGE("-t left something listening", !probe.connectTcp(d_->port(1)));

        // An unknown key on line 3.
        std::string unknown = d_->writeConfig(
            std::string("log_level = 2;\nmin_servers = 2;\nbogus_key = 1;\n") + minimal,
            "unknown.conf");
        r = itest::runCommand({bin, "-t", "-c", unknown}, "", 5000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + r.err, 1, r.exitCode);
        CPPUNIT_ASSERT_MESSAGE(r.err, r.err.find(unknown + ":3") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(r.err, r.err.find("bogus_key") != std::string::npos);

        // A wrong type names its key and line too.
        std::string wrongType = d_->writeConfig(
            std::string("log_level = 2;\nmin_servers = \"many\";\n") + minimal, "type.conf");
        r = itest::runCommand({bin, "-t", "-c", wrongType}, "", 5000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + r.err, 1, r.exitCode);
        CPPUNIT_ASSERT_MESSAGE(r.err, r.err.find(wrongType + ":2") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(r.err, r.err.find("min_servers") != std::string::npos);

        // A syntax error on line 2.
        std::string syntax = d_->writeConfig(
            std::string("log_level = 2;\nmin_servers = ;\n") + minimal, "syntax.conf");
        r = itest::runCommand({bin, "-t", "-c", syntax}, "", 5000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + r.err, 1, r.exitCode);
        CPPUNIT_ASSERT_MESSAGE(r.err, r.err.find(syntax + ":2") != std::string::npos);

        // --dump-config: the defaults of everything the file does not set.
        r = itest::runCommand({bin, "--dump-config", "-c", good}, "", 5000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + r.err, 0, r.exitCode);
        for (const char* line :
             {"min_servers = 4;", "min_spare_servers = 4;", "max_spare_servers = 12;",
              "max_servers = 25;", "max_requests = 1000;", "request_timeout = 20;",
              "max_keepalive = 0;", "log_level = 2;", "vhost_by_policy_context = false;",
              "keepalive_timeout = "})
            CPPUNIT_ASSERT_MESSAGE(std::string("missing '") + line + "' in:\n" + r.out,
                                   r.out.find(line) != std::string::npos);
        // The keep-alive default must suit Postfix's smtpd_policy_service_max_idle (300 s).
        size_t k = r.out.find("keepalive_timeout = ");
        long keepalive = std::stol(r.out.substr(k + std::string("keepalive_timeout = ").size()));
        CPPUNIT_ASSERT_MESSAGE("keepalive_timeout default " + std::to_string(keepalive),
                               keepalive >= 300);
        CPPUNIT_ASSERT(r.out.find("action = \"dunno\";") != std::string::npos);
        // The dump is itself a valid config.
        std::string dumped = d_->path("dumped.conf");
        itest::writeFile(dumped, r.out);
        auto r2 = itest::runCommand({bin, "-t", "-c", dumped}, "", 5000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("dump does not load again: " + r2.err, 0, r2.exitCode);
        CPPUNIT_ASSERT(!itest::fileExists(d_->pidPath()));
    }

    // 14. policyd-client: two piped requests with --keepalive print two actions over one
    //     connection; exit status 0. Also over the unix socket, and without --keepalive.
    void testPolicydClientKeepalive() {
        start(globals(4) + R"(
port = [ "127.0.0.1:@PORT1@", "@SOCK@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
virtual_hosts = (
  { name = "main"; port = "@PORT1@";
    plugins = (
      { name = "special"; module = "Condition"; key = "sender"; match = "special@example.com";
        action = "reject special sender"; }
    ); },
  { name = "sock"; port = "@SOCK@";
    plugins = ( { name = "s"; module = "Action"; action = "defer via socket"; } ); }
);
)");
        const std::string client = itest::policydClientBin();
        CPPUNIT_ASSERT_MESSAGE("cannot execute " + client + " (set POLICYD_CLIENT_BIN)",
                               access(client.c_str(), X_OK) == 0);
        const std::string input =
            "sender=someone@example.com\nclient_address=192.0.2.1\n\nsender=special@example."
            "com\n\n";
        const std::string hostPort = "127.0.0.1:" + std::to_string(d_->port(1));
        const std::string accepted = "accepted connection on port " + std::to_string(d_->port(1));

        size_t logFrom = d_->logSize();
        auto r = itest::runCommand({client, "--keepalive", "-H", hostPort}, input, 10000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + r.err, 0, r.exitCode);
        CPPUNIT_ASSERT_EQUAL(std::string("dunno\nreject special sender\n"), r.out);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(d_->logTail(), size_t(1),
                                     itest::countOf(d_->log().substr(logFrom), accepted));

        logFrom = d_->logSize();
        r = itest::runCommand({client, "-H", hostPort}, input, 10000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + r.err, 0, r.exitCode);
        CPPUNIT_ASSERT_EQUAL(std::string("dunno\nreject special sender\n"), r.out);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(d_->logTail(), size_t(2),
                                     itest::countOf(d_->log().substr(logFrom), accepted));

        r = itest::runCommand({client, "--keepalive", "-s", d_->sock()}, input, 10000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + r.err, 0, r.exitCode);
        CPPUNIT_ASSERT_EQUAL(std::string("defer via socket\ndefer via socket\n"), r.out);
    }

  private:
    std::unique_ptr<Daemon> d_;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestDaemon);
