// Integration tests of the accounting how-to (mtpolicyd-accounting-quota(7)) over the wire
// against a real MariaDB: the real mtpolicyd (DaemonFixture) with the chain of
// conf/mtpolicyd-mysql.conf on the shared private MariaDB (MariaDbFixture), the tables of
// sql/mysql.sql, and END-OF-MESSAGE requests as Postfix sends them. They check the per-client
// limits of relay_policies/relay_hosts end to end, exact counters under concurrent workers, and
// what a database outage does to answers and counters, with the default on_error (no answer,
// the client resends the same instance) and with on_error = "continue" (mail passes uncounted).
//
// Ownership: every test starts its own mtpolicyd (tearDown stops it) and uses the one MariaDB
// of the test program; setUp drops and reloads the how-to tables, and tearDown starts the
// server again if a test left it stopped. The client threads of a test are joined before it
// ends. Only loopback TCP and the server's unix socket are used.
#include <cppunit/extensions/HelperMacros.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "DaemonFixture.h"
#include "MariaDbFixture.h"
#include "PostfixLoad.h"
#include "mtpolicyd/util/Strings.h"

using itest::Clock;
using itest::Conn;
using itest::Daemon;
using itest::elapsedMs;

namespace {

using itest::sleepMs;
using itest::pidList;

using itest::confString;
using itest::sqlStatements;
using itest::srcdir;
using itest::Counters;
using itest::eomRequest;

const char* const kCoin = "defer you exceeded your monthly limit, please insert coin";

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

std::string monthNow() {
    char buf[32];
    time_t now = time(nullptr);
    struct tm tm {};
    localtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m", &tm);
    return buf;
}


// The pid in a log line "...T.. mtpolicyd[PID]: level: ...", or 0.
pid_t logPid(const std::string& line) {
    size_t open = line.find('[');
    size_t close = line.find("]: ", open == std::string::npos ? 0 : open);
    if (open == std::string::npos || close == std::string::npos) return 0;
    return static_cast<pid_t>(std::atol(line.substr(open + 1, close - open - 1).c_str()));
}

// The text between `prefix` and the next character of `stops` (or the end) in `line`.
std::string fieldAfter(const std::string& line, const std::string& prefix, const char* stops) {
    size_t p = line.find(prefix);
    if (p == std::string::npos) return "";
    p += prefix.size();
    size_t e = line.find_first_of(stops, p);
    return line.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

using Load = itest::PostfixLoad;

}  // namespace

class TestAccountingMysql : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestAccountingMysql);
    CPPUNIT_TEST(testHowtoQuotaPerClient);
    CPPUNIT_TEST(testConcurrentWorkersCountExactly);
    CPPUNIT_TEST(testOutageNoAnswerAndResend);
    CPPUNIT_TEST(testOutageOnErrorContinue);
    CPPUNIT_TEST(testLongSenderAndInstance);
    CPPUNIT_TEST(testRestartDedupBothEngines);
    CPPUNIT_TEST(testRoundTripsPerMessage);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override {
        db_ = &itest::sharedMariaDb();  // throws (the test fails) when MariaDB is missing
        db_->start();                   // a previous test may have left it stopped
        db_->rootExec(
            "DROP TABLE IF EXISTS relay_hosts, relay_policies, user_config, acct_client_address, "
            "acct_sasl_username");
        std::string file = srcdir() + "/sql/mysql.sql";
        std::string sql = itest::readFile(file);
        CPPUNIT_ASSERT_MESSAGE("cannot read " + file + " (set MTPOLICYD_SRCDIR)", !sql.empty());
        std::vector<std::string> stmts = sqlStatements(sql);
        CPPUNIT_ASSERT_MESSAGE(file, stmts.size() >= 5);
        for (const auto& s : stmts) db_->rootExec(s);
        d_ = std::make_unique<Daemon>();
    }

    void tearDown() override {
        d_.reset();  // stops the daemon, removes its dir
        try {
            db_->start();  // leave the shared server running for the next test
        } catch (const std::exception& e) {
            std::fprintf(stderr, "[TestAccountingMysql] cannot restart MariaDB: %s\n", e.what());
        }
    }

    // The how-to end to end: SqlUserConfig (relay_policies JOIN relay_hosts) -> Quota with
    // uc_threshold = "quota_count" -> Accounting, on one keep-alive connection. 192.0.2.1
    // (standard, 5) gets 5 dunno then the coin text, 192.0.2.2 (premium, 20) 20 then the
    // coin text, 192.0.2.3 (not listed: threshold 1000) is never deferred. Deferred messages
    // are not counted; the counters hold exactly what was sent. A change in relay_hosts takes
    // effect with the next message.
    void testHowtoQuotaPerClient() {
        db_->rootExec(
            "INSERT INTO relay_policies (id, name, config) VALUES "
            "(1, 'standard', '{\"quota_count\":\"5\"}'), (2, 'premium', "
            "'{\"quota_count\":\"20\"}')");
        db_->rootExec(
            "INSERT INTO relay_hosts (client_address, relay_policy) VALUES "
            "('192.0.2.1', 1), ('192.0.2.2', 2)");
        start(howtoConfig());

        struct Host {
            std::string addr;
            int sends, allowed;
            Counters expect;
            int sent = 0;
        };
        std::vector<Host> hosts = {
            {"192.0.2.1", 7, 5, {}}, {"192.0.2.2", 22, 20, {}}, {"192.0.2.3", 25, 25, {}}};
        Conn c = d_->connect();
        CPPUNIT_ASSERT_MESSAGE("connect", c.isOpen());
        int n = 0;
        // Round robin over the hosts, so that their counters interleave.
        for (bool more = true; more;) {
            more = false;
            for (auto& h : hosts) {
                if (h.sent >= h.sends) continue;
                more = true;
                ++h.sent;
                ++n;
                long long rcpt = n % 5;  // 0..4; 0 counts as one recipient
                long long size = 1000 + n * 37;
                std::string inst = "howto" + std::to_string(n);
                std::string reply;
                Conn::Status st = c.request(eomRequest(inst, h.addr, rcpt, size), reply, 5000);
                std::string what = h.addr + " message " + std::to_string(h.sent) + " (" + inst +
                                   "): " + itest::statusName(st) + ", reply '" + reply + "'\n" +
                                   d_->logTail();
                CPPUNIT_ASSERT_MESSAGE(what, st == Conn::Status::Ok);
                if (h.sent <= h.allowed) {
                    CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::string("dunno"),
                                                 itest::actionOf(reply));
                    h.expect.add(rcpt, size);
                } else {
                    CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::string(kCoin), itest::actionOf(reply));
                }
            }
        }
        CPPUNIT_ASSERT_MESSAGE("one keep-alive connection for all requests", c.peerOpen());

        std::string month = monthNow();
        auto rows = db_->rootQuery(
            "SELECT `key`, `time`, `count`, count_rcpt, size, size_rcpt FROM acct_client_address "
            "ORDER BY `key`");
        CPPUNIT_ASSERT_EQUAL_MESSAGE("rows in acct_client_address", size_t(3), rows.size());
        for (size_t i = 0; i < hosts.size(); ++i) {
            const auto& row = rows[i];
            const Counters& e = hosts[i].expect;
            std::string what = hosts[i].addr + ": expected " + e.str();
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, hosts[i].addr, row.at(0));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, month, row.at(1));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(e.count), row.at(2));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(e.rcpt), row.at(3));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(e.size), row.at(4));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(e.sizeRcpt), row.at(5));
        }
        CPPUNIT_ASSERT_EQUAL(5LL, hosts[0].expect.count);
        CPPUNIT_ASSERT_EQUAL(20LL, hosts[1].expect.count);
        CPPUNIT_ASSERT_EQUAL(25LL, hosts[2].expect.count);

        // "A change takes effect with the next message; nothing is cached": 192.0.2.1 moves to
        // premium (20) and may send again; removed, it gets the default 1000.
        auto send1 = [&](const std::string& inst) {
            std::string reply;
            Conn::Status st = c.request(eomRequest(inst, "192.0.2.1", 1, 100), reply, 5000);
            CPPUNIT_ASSERT_MESSAGE(inst + ": " + itest::statusName(st), st == Conn::Status::Ok);
            return itest::actionOf(reply);
        };
        db_->rootExec("UPDATE relay_hosts SET relay_policy = 2 WHERE client_address = '192.0.2.1'");
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), send1("howto-moved"));
        db_->rootExec("UPDATE relay_policies SET config = '{\"quota_count\":6}' WHERE id = 2");
        CPPUNIT_ASSERT_EQUAL(std::string(kCoin), send1("howto-lowered"));  // count 6 >= 6
        db_->rootExec("DELETE FROM relay_hosts WHERE client_address = '192.0.2.1'");
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), send1("howto-removed"));
        CPPUNIT_ASSERT_EQUAL(std::string("7"),
                             db_->rootQuery("SELECT `count` FROM acct_client_address WHERE `key` "
                                            "= '192.0.2.1'")
                                 .at(0)
                                 .at(0));
        std::string log = d_->log();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, "error while processing"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, itest::MariaDb::kPassword));
    }

    // 8 connections x 500 messages from one client address, at once, on 4 (or more) workers:
    // every message answered, the counters exact (no lost or duplicated update). The counter
    // table does not exist at the start: the workers create it themselves, concurrently.
    void testConcurrentWorkersCountExactly() {
        db_->rootExec("DROP TABLE acct_client_address");
        start(baseGlobals(1, 4, 8, 2, 4) + connection() + R"(
virtual_hosts = (
  { name = "accounting"; port = "@PORT1@";
    plugins = (
      { name = "QuotaIP"; module = "Quota"; field = "client_address"; metric = "count";
        threshold = 100000000; action = "defer over quota"; },
      { name = "AcctIP"; module = "Accounting"; fields = "client_address"; }
    ); }
);
)");
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(),
                               d_->waitWorkers(4, 3000) || d_->workers().size() >= 4);

        constexpr int kThreads = 8, kPerThread = 500;
        const std::string client = "198.51.100.7";
        // Spread the keep-alive connections over the workers. Which worker accepts a
        // connection is up to the kernel: connects one at a time on an idle daemon tend to go
        // to the same worker, a burst to one or two (each accepts up to 4 per wake-up). So:
        // bursts of 24 connects, a request without client_address on each (neither checked nor
        // counted) to learn from the log which worker serves it, then 8 of them picked round
        // robin over the workers; the rest are closed.
        std::vector<Conn> pool;
        std::vector<pid_t> poolPid;
        int probe = 0;
        std::set<pid_t> seen;
        for (int burst = 0; burst < 5 && seen.size() < 4; ++burst) {
            std::vector<Conn> fresh(24);
            for (auto& c : fresh) {
                c = d_->connect();
                CPPUNIT_ASSERT_MESSAGE("connect", c.isOpen());
            }
            for (auto& c : fresh) {
                std::string inst = "probe." + std::to_string(++probe), reply;
                Conn::Status st = c.request(itest::makeRequest({{"instance", inst}}), reply);
                CPPUNIT_ASSERT_MESSAGE(inst + ": " + itest::statusName(st), st == Conn::Status::Ok);
                pid_t pid = servingPid(inst);
                CPPUNIT_ASSERT_MESSAGE(inst + " not in the log\n" + d_->logTail(), pid > 0);
                seen.insert(pid);
                pool.push_back(std::move(c));
                poolPid.push_back(pid);
            }
        }
        std::vector<Conn> conns;
        std::vector<pid_t> servedBy;
        for (bool any = true; any && conns.size() < size_t(kThreads);) {
            any = false;
            for (pid_t w : seen) {
                for (size_t i = 0; i < pool.size(); ++i) {
                    if (poolPid[i] != w || !pool[i].isOpen()) continue;
                    conns.push_back(std::move(pool[i]));
                    servedBy.push_back(w);
                    any = true;
                    break;
                }
                if (conns.size() == size_t(kThreads)) break;
            }
        }
        pool.clear();
        CPPUNIT_ASSERT_EQUAL(size_t(kThreads), conns.size());
        const std::set<pid_t> holders(servedBy.begin(), servedBy.end());
        CPPUNIT_ASSERT_MESSAGE("cannot spread 8 connections over 2 workers\n" + d_->logTail(),
                               holders.size() >= 2);
        std::atomic<int> ready{0};
        std::atomic<bool> go{false};
        std::vector<Counters> sent(kThreads);
        std::vector<int> ok(kThreads, 0);
        std::vector<std::string> firstError(kThreads);
        std::vector<std::thread> threads;
        auto t0 = Clock::now();
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                ++ready;
                while (!go) std::this_thread::yield();
                for (int i = 0; i < kPerThread; ++i) {
                    long long rcpt = (i * 7 + t) % 6;  // 0..5
                    long long size = 300 + (i * 97 + t * 1013) % 20000;
                    std::string inst = "conc." + std::to_string(t) + "." + std::to_string(i);
                    std::string reply;
                    Conn::Status st =
                        conns[t].request(eomRequest(inst, client, rcpt, size), reply, 10000);
                    std::string action = itest::actionOf(reply);
                    if (st != Conn::Status::Ok || action != "dunno") {
                        firstError[t] =
                            inst + ": " + itest::statusName(st) + ", reply '" + reply + "'";
                        return;
                    }
                    sent[t].add(rcpt, size);
                    ++ok[t];
                }
            });
        }
        while (ready < kThreads) std::this_thread::yield();
        t0 = Clock::now();
        go = true;
        for (auto& th : threads) th.join();
        long ms = elapsedMs(t0);

        Counters total;
        int answered = 0;
        for (int t = 0; t < kThreads; ++t) {
            CPPUNIT_ASSERT_MESSAGE(
                "thread " + std::to_string(t) + ": " + firstError[t] + "\n" + d_->logTail(),
                firstError[t].empty());
            answered += ok[t];
            total.count += sent[t].count;
            total.rcpt += sent[t].rcpt;
            total.size += sent[t].size;
            total.sizeRcpt += sent[t].sizeRcpt;
        }
        CPPUNIT_ASSERT_EQUAL(kThreads * kPerThread, answered);

        auto rows = db_->rootQuery(
            "SELECT `key`, `time`, `count`, count_rcpt, size, size_rcpt FROM acct_client_address");
        CPPUNIT_ASSERT_EQUAL(size_t(1), rows.size());
        std::string what = "expected " + total.str();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, client, rows[0].at(0));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, monthNow(), rows[0].at(1));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(kThreads * kPerThread), rows[0].at(2));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(total.rcpt), rows[0].at(3));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(total.size), rows[0].at(4));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(total.sizeRcpt), rows[0].at(5));
        // The table the workers created is the one of sql/mysql.sql: 64-bit counters.
        auto type = db_->rootQuery(
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "'mtpolicyd' AND TABLE_NAME = 'acct_client_address' AND COLUMN_NAME = 'count'");
        CPPUNIT_ASSERT_EQUAL(std::string("bigint(20) unsigned"), type.at(0).at(0));

        // Several workers did the writing: the per-request log lines name the worker's pid.
        std::set<pid_t> servers;
        std::istringstream in(d_->log());
        std::string line;
        size_t lines = 0;
        while (std::getline(in, line))
            if (contains(line, "accounting: instance=conc.")) {
                ++lines;
                servers.insert(logPid(line));
            }
        CPPUNIT_ASSERT_EQUAL(size_t(kThreads * kPerThread), lines);
        std::fprintf(stderr,
                     "[TestAccountingMysql] concurrency: %d requests on %d connections in %ld ms "
                     "(%.0f/s), served by %zu workers (%d connects to spread them)\n",
                     answered, kThreads, ms, ms > 0 ? answered * 1000.0 / ms : 0.0, servers.size(),
                     probe);
        CPPUNIT_ASSERT_MESSAGE(
            "requests were served by only " + std::to_string(servers.size()) + " worker(s)",
            servers == holders);
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(d_->log(), "error while processing"));
    }

    // MariaDB stops for ~2 s under load, default on_error: requests that need it get no answer
    // (the connection is closed), the client resends the same instance until answered; the
    // workers survive and recover by themselves; every answered message is counted exactly
    // once.
    void testOutageNoAnswerAndResend() { outage(false); }

    // The same outage with on_error = "continue": every request is answered (dunno), mail
    // passes uncounted while the server is away, and counting resumes when it is back.
    void testOutageOnErrorContinue() { outage(true); }

    // Values longer than their columns on MariaDB in its default strict mode, which refuses a
    // too long value ("Data too long"; VARCHAR(255) of utf8mb4 holds 255 characters) and a
    // split UTF-8 sequence ("Incorrect string value"): a 300-character sender, 150-byte
    // instances (VARCHAR(128)) and a 301-byte UTF-8 sender. Every message is answered (not the
    // on_error outcome, no reply), SqlUserConfig's lookup of the long value finds no row
    // without an error, Accounting counts each sender under its shortened key, Quota reads
    // that row, and a message resent to another connection is counted once.
    void testLongSenderAndInstance() {
        db_->rootExec("DROP TABLE IF EXISTS acct_sender");
        db_->rootExec("DELETE FROM acct_instances WHERE plugin = 'AcctLong'");
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             db_->rootQuery("SELECT FIND_IN_SET('STRICT_TRANS_TABLES', @@GLOBAL.sql_mode) > 0")
                                 .at(0)
                                 .at(0));
        start(baseGlobals(2, 2, 2, 1, 2) + connection() + R"(
virtual_hosts = (
  { name = "accounting"; port = "@PORT1@";
    plugins = (
      { name = "SenderConfig"; module = "SqlUserConfig"; field = "sender"; },
      { name = "QuotaSender"; module = "Quota"; field = "sender"; metric = "count";
        threshold = 2; action = "defer sender quota"; },
      { name = "AcctLong"; module = "Accounting"; fields = "client_address, sender"; }
    ); }
);
)");
        std::string ascii = "long-";
        while (ascii.size() < 300 - 12) ascii += static_cast<char>('a' + ascii.size() % 26);
        ascii += "@example.org";
        CPPUNIT_ASSERT_EQUAL(size_t(300), ascii.size());
        // "u" and then U+00E9 (2 bytes) at odd offsets: bytes 199-200 are one character, so
        // the 200-byte prefix must stop at 199 or MariaDB refuses the key.
        std::string utf8 = "u";
        while (utf8.size() < 300 - 12) utf8 += "\xc3\xa9";
        utf8 += "@example.org";
        CPPUNIT_ASSERT_EQUAL(size_t(301), utf8.size());
        const std::string client = "198.51.100.7";
        auto send = [&](Conn& c, const std::string& sender, const std::string& instance) {
            std::string req = itest::makeRequest({{"protocol_state", "END-OF-MESSAGE"},
                                                  {"protocol_name", "ESMTP"},
                                                  {"sender", sender},
                                                  {"recipient", ""},
                                                  {"recipient_count", "1"},
                                                  {"client_address", client},
                                                  {"instance", instance},
                                                  {"size", "1000"}});
            std::string reply;
            Conn::Status st = c.request(req, reply, 5000);
            CPPUNIT_ASSERT_MESSAGE(sender.substr(0, 5) + " " + instance.substr(140) + ": " + itest::statusName(st) +
                                       ", reply '" + reply + "'\n" + d_->logTail(),
                                   st == Conn::Status::Ok);
            return itest::actionOf(reply);
        };
        auto inst = [](int n) { return std::string(140, 'L') + std::to_string(1000000000 + n); };
        Conn c = d_->connect();
        CPPUNIT_ASSERT_MESSAGE("connect", c.isOpen());
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), send(c, ascii, inst(1)));
        {
            Conn again = d_->connect();  // resent on another connection, maybe another worker
            CPPUNIT_ASSERT_MESSAGE("connect", again.isOpen());
            CPPUNIT_ASSERT_EQUAL(std::string("dunno"), send(again, ascii, inst(1)));
        }
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), send(c, ascii, inst(2)));
        CPPUNIT_ASSERT_EQUAL(std::string("defer sender quota"), send(c, ascii, inst(3)));
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), send(c, utf8, inst(4)));

        auto hexOf = [](const std::string& v) {
            std::string hex;
            for (unsigned char ch : v) {
                char b[3];
                std::snprintf(b, sizeof b, "%02X", ch);
                hex += b;
            }
            return hex;
        };
        auto rows = db_->rootQuery("SELECT HEX(`key`), LENGTH(`key`), `count`, `time` FROM acct_sender ORDER BY `key`");
        CPPUNIT_ASSERT_EQUAL_MESSAGE("rows in acct_sender", size_t(2), rows.size());
        CPPUNIT_ASSERT_EQUAL(hexOf(mtp::fitKey(ascii, 255)), rows[0].at(0));
        CPPUNIT_ASSERT_EQUAL(hexOf(ascii.substr(0, 200) + "~"), rows[0].at(0).substr(0, 402));
        CPPUNIT_ASSERT_EQUAL(std::string("233"), rows[0].at(1));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), rows[0].at(2));
        CPPUNIT_ASSERT_EQUAL(monthNow(), rows[0].at(3));
        CPPUNIT_ASSERT_EQUAL(hexOf(mtp::fitKey(utf8, 255)), rows[1].at(0));
        CPPUNIT_ASSERT_EQUAL(hexOf(utf8.substr(0, 199) + "~"), rows[1].at(0).substr(0, 400));
        CPPUNIT_ASSERT_EQUAL(std::string("232"), rows[1].at(1));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), rows[1].at(2));
        CPPUNIT_ASSERT_EQUAL(std::string("3"), counterRow(client).at(0));
        auto ins = db_->rootQuery(
            "SELECT COUNT(*), MAX(LENGTH(instance)) FROM acct_instances WHERE plugin = 'AcctLong'");
        CPPUNIT_ASSERT_EQUAL(std::string("3"), ins.at(0).at(0));
        CPPUNIT_ASSERT_EQUAL(std::string("128"), ins.at(0).at(1));
        // A sender that is not UTF-8 (ISO-8859-1 "j\xf6rg"): a utf8mb4 column would refuse it
        // ("Incorrect string value"); it is counted under its valid prefix, "~" and a hash.
        const std::string latin1 = "j\xf6rg@example.org";
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), send(c, latin1, inst(5)));
        auto bad = db_->rootQuery("SELECT `count` FROM acct_sender WHERE HEX(`key`) = '" +
                                  hexOf(mtp::fitKey(latin1, 255)) + "'");
        CPPUNIT_ASSERT_EQUAL_MESSAGE("row of the ISO-8859-1 sender", size_t(1), bad.size());
        CPPUNIT_ASSERT_EQUAL(std::string("1"), bad.at(0).at(0));
        std::string log = d_->log();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, "error while processing"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, "Data too long"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, "Incorrect string value"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), contains(log, "plugin AcctLong: sender: a value of 30"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), contains(log, "plugin AcctLong: instance: a value of 150 bytes"));
    }

  private:
    // Globals: log and pid file, the log level, fixed worker counts, generous timeouts.
    static std::string baseGlobals(int logLevel, int minServers, int maxServers, int minSpare,
                                   int maxSpare) {
        return "log_file = \"@LOG@\";\npid_file = \"@PID@\";\nlog_level = " +
               std::to_string(logLevel) + ";\nport = [ \"127.0.0.1:@PORT1@\" ];\n" +
               "min_servers = " + std::to_string(minServers) +
               "; max_servers = " + std::to_string(maxServers) +
               ";\nmin_spare_servers = " + std::to_string(minSpare) +
               "; max_spare_servers = " + std::to_string(maxSpare) +
               ";\nmax_requests = 0;\nrequest_timeout = 10;\n";
    }

    std::string connection() const { return itest::howtoConnection(*db_); }

    // A message resent after a restart (its session is gone with the worker) is not counted
    // again, on InnoDB tables (one compound statement per message on MariaDB) and on MyISAM
    // tables as the Perl how-to made them (the statements one by one).
    void testRestartDedupBothEngines() {
        db_->rootExec("INSERT INTO relay_policies (id, name, config) VALUES (1, 'big', '{\"quota_count\":\"1000\"}')");
        for (const std::string engine : {"InnoDB", "MyISAM"}) {
            db_->rootExec("DROP TABLE IF EXISTS acct_client_address");
            db_->rootExec("DELETE FROM acct_instances");
            db_->rootExec("ALTER TABLE acct_instances ENGINE=" + engine);
            Counters expect;
            auto send = [&](const std::string& inst, long long rcpt, long long size, bool counts) {
                Conn c = d_->connect();
                CPPUNIT_ASSERT_MESSAGE(engine + ": connect", c.isOpen());
                std::string reply;
                Conn::Status st = c.request(eomRequest(inst, "192.0.2.9", rcpt, size), reply, 5000);
                CPPUNIT_ASSERT_MESSAGE(engine + " " + inst + ": " + itest::statusName(st) + " '" + reply + "'\n" +
                                           d_->logTail(),
                                       st == Conn::Status::Ok && itest::actionOf(reply) == "dunno");
                if (counts) expect.add(rcpt, size);
            };
            // MyISAM: the tables Accounting creates, as the Perl how-to had them.
            const std::string tmpl = howtoConfig(engine);
            start(tmpl);
            for (int i = 1; i <= 6; ++i) send(engine + "-m" + std::to_string(i), i % 3, 1000 * i, true);
            d_.reset();  // stop: the workers' sessions are gone
            d_ = std::make_unique<Daemon>();
            start(tmpl);
            for (int i = 4; i <= 8; ++i) send(engine + "-m" + std::to_string(i), i % 3, 1000 * i, i > 6);
            auto rows = db_->rootQuery(
                "SELECT `count`, count_rcpt, size, size_rcpt FROM acct_client_address WHERE `key` = '192.0.2.9'");
            CPPUNIT_ASSERT_EQUAL_MESSAGE(engine, size_t(1), rows.size());
            std::string what = engine + ": expected " + expect.str() + "\n" + d_->logTail();
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(expect.count), rows[0].at(0));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(expect.rcpt), rows[0].at(1));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(expect.size), rows[0].at(2));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(expect.sizeRcpt), rows[0].at(3));
            CPPUNIT_ASSERT_EQUAL(8LL, expect.count);
            auto engines = db_->rootQuery(
                "SELECT DISTINCT ENGINE FROM information_schema.tables WHERE table_schema = DATABASE() AND "
                "table_name IN ('acct_client_address', 'acct_instances')");
            CPPUNIT_ASSERT_EQUAL_MESSAGE(engine, size_t(1), engines.size());
            CPPUNIT_ASSERT_EQUAL(engine, engines[0].at(0));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(engine, std::string("8"),
                                         db_->rootQuery("SELECT COUNT(*) FROM acct_instances").at(0).at(0));
            d_.reset();
            d_ = std::make_unique<Daemon>();
        }
        db_->rootExec("ALTER TABLE acct_instances ENGINE=InnoDB");
    }

    // The how-to chain costs three round trips per message on InnoDB (SqlUserConfig SELECT,
    // Quota SELECT, and Accounting's transaction as one compound statement) and six on MyISAM
    // (START TRANSACTION, INSERT IGNORE, upsert, COMMIT), counted by the server's Questions
    // (client commands) while nothing else talks to it.
    void testRoundTripsPerMessage() {
        db_->rootExec("INSERT INTO relay_policies (id, name, config) VALUES (1, 'big', '{\"quota_count\":\"1000\"}')");
        db_->rootExec("INSERT INTO relay_hosts (client_address, relay_policy) VALUES ('192.0.2.7', 1)");
        for (const std::string engine : {"InnoDB", "MyISAM"}) {
            db_->rootExec("DROP TABLE IF EXISTS acct_client_address");
            db_->rootExec("ALTER TABLE acct_instances ENGINE=" + engine);
            start(howtoConfig(engine));
            Conn c = d_->connect();
            CPPUNIT_ASSERT_MESSAGE(engine + ": connect", c.isOpen());
            auto send = [&](const std::string& inst) {
                std::string reply;
                Conn::Status st = c.request(eomRequest(inst, "192.0.2.7", 1, 1000), reply, 5000);
                CPPUNIT_ASSERT_MESSAGE(engine + " " + inst + ": '" + reply + "'\n" + d_->logTail(),
                                       st == Conn::Status::Ok && itest::actionOf(reply) == "dunno");
            };
            // The first messages create the table and prepare the statements.
            for (int i = 0; i < 3; ++i) send(engine + "-warm" + std::to_string(i));
            auto questions = [&] {
                return std::stoll(db_->rootQuery("SHOW GLOBAL STATUS LIKE 'Questions'").at(0).at(1));
            };
            long long before = questions();
            const int kMessages = 20;
            for (int i = 0; i < kMessages; ++i) send(engine + "-rt" + std::to_string(i));
            long long commands = questions() - before - 1;  // not the second SHOW
            long long expected = engine == "InnoDB" ? 3 * kMessages : 6 * kMessages;
            // A worker may purge old instances once a minute: a command or two more.
            CPPUNIT_ASSERT_MESSAGE(engine + ": " + std::to_string(commands) + " commands for " +
                                       std::to_string(kMessages) + " messages, expected " + std::to_string(expected),
                                   commands >= expected && commands <= expected + 2);
            auto rows = db_->rootQuery("SELECT `count` FROM acct_client_address WHERE `key` = '192.0.2.7'");
            CPPUNIT_ASSERT_EQUAL_MESSAGE(engine, std::string("23"), rows.at(0).at(0));
            d_.reset();
            d_ = std::make_unique<Daemon>();
        }
        db_->rootExec("ALTER TABLE acct_instances ENGINE=InnoDB");
    }

    // conf/mtpolicyd-mysql.conf's accounting virtual host, as it is shipped; with `engine`,
    // Accounting's mysql_engine set to it.
    std::string howtoConfig(const std::string& engine = "") const {
        std::string conf = baseGlobals(2, 4, 4, 1, 4) + connection() + itest::howtoVhost(1000);
        if (engine.empty()) return conf;
        const std::string fields = "fields = \"client_address\";";
        size_t at = conf.find(fields);
        CPPUNIT_ASSERT(at != std::string::npos);
        conf.insert(at + fields.size(), " mysql_engine = \"" + engine + "\";");
        return conf;
    }

    void start(const std::string& tmpl) {
        std::string conf = d_->writeConfig(tmpl);
        std::string err = d_->start(conf);
        CPPUNIT_ASSERT_MESSAGE(err, err.empty());
    }

    // The pid of the worker that answered `instance` (its per-request log line), or 0.
    pid_t servingPid(const std::string& instance) const {
        std::istringstream in(d_->log());
        std::string line;
        while (std::getline(in, line))
            if (contains(line, ": instance=" + instance + ",")) return logPid(line);
        return 0;
    }

    std::vector<std::string> counterRow(const std::string& key) {
        auto rows = db_->rootQuery(
            "SELECT `count`, count_rcpt, size, size_rcpt FROM acct_client_address WHERE `key` = '" +
            key + "'");
        if (rows.empty()) return {"0", "0", "0", "0"};
        return rows.at(0);
    }

    void outage(bool continueOnError) {
        const std::string client = continueOnError ? "203.0.113.4" : "203.0.113.3";
        start(baseGlobals(3, 4, 4, 1, 4) + connection() +
              "virtual_hosts = (\n  { name = \"accounting\"; port = \"@PORT1@\";\n"
              "    plugins = (\n"
              "      { name = \"AcctIP\"; module = \"Accounting\"; fields = \"client_address\";\n"
              "        log_level = 2;" +
              std::string(continueOnError ? " on_error = \"continue\";" : "") +
              " }\n    ); }\n);\n");
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitWorkers(4, 3000));
        const std::vector<pid_t> workers0 = d_->workers();
        const pid_t master = d_->pid();

        Load load(d_->port(1), continueOnError ? "cont" : "fail", 4, 4,
                  [client](const Load::Msg& m) { return eomRequest(m.instance, client, m.rcpt, m.size); },
                  8000 /* read: above any database timeout of the config */, 20000 /* give up */);
        load.start();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(),
                               itest::waitFor([&] { return load.answered() >= 200; }, 5000));

        // The outage: stop (SIGTERM, clean shutdown), ~2 s away, start again.
        auto tStopCall = Clock::now();
        bool clean = db_->stop();
        auto tDown = Clock::now();
        sleepMs(2000);
        auto tStartCall = Clock::now();
        db_->start();
        auto tUp = Clock::now();
        size_t answeredDuring = load.countBetween(
            Load::Kind::Answer, tDown + std::chrono::milliseconds(200), tStartCall);
        size_t noReplyDuring = load.countBetween(Load::Kind::NoReply, tDown, tStartCall);

        // Recovery without restarting the daemon.
        long recoveryMs = -1;
        std::string countAtUp;
        if (!continueOnError) {
            Clock::time_point at;
            bool back = itest::waitFor([&] { return load.firstAnswerAfter(tStartCall, at, /*firstAttemptOnly=*/true); }, 5000);
            CPPUNIT_ASSERT_MESSAGE("no answer within 5 s after MariaDB was back\n" + d_->logTail(),
                                   back);
            recoveryMs = std::max(
                0L, static_cast<long>(
                        std::chrono::duration_cast<std::chrono::milliseconds>(at - tUp).count()));
        } else {
            // The load keeps running: the counter grows again once a worker has reconnected.
            countAtUp = counterRow(client).at(0);
            bool back = itest::waitFor(
                [&] { return std::stoll(counterRow(client).at(0)) > std::stoll(countAtUp); }, 5000,
                20);
            CPPUNIT_ASSERT_MESSAGE("counting did not resume within 5 s\n" + d_->logTail(), back);
            recoveryMs = elapsedMs(tUp);
        }
        sleepMs(1000);  // more load after the recovery
        load.stop();

        std::vector<Load::Msg> msgs = load.messages();
        Counters answered, answeredBeforeStop;
        size_t resent = 0, gaveUp = 0;
        std::map<std::string, const Load::Msg*> byInstance;
        for (const auto& m : msgs) {
            byInstance[m.instance] = &m;
            if (!m.answered) {
                ++gaveUp;
                continue;
            }
            if (m.attempts > 1) ++resent;
            answered.add(m.rcpt, m.size);
            if (m.answeredAt < tStopCall) answeredBeforeStop.add(m.rcpt, m.size);
        }
        size_t noReply = load.countOf(Load::Kind::NoReply);
        size_t hangs = load.countOf(Load::Kind::Hang);
        size_t connectFailed = load.countOf(Load::Kind::ConnectFailed);
        std::vector<std::string> row = counterRow(client);
        const std::string log = d_->log();

        // Where were the resent messages answered: by a worker that had already failed them
        // (and marked them done in its session) or by another one? And did Accounting skip any
        // of them as "already done"?
        std::map<std::string, std::set<pid_t>> failedOn;
        std::map<std::string, pid_t> answeredOn;
        size_t skipped = 0, sameWorker = 0, otherWorker = 0;
        // Failed attempts by cause: the driver's fast "is unavailable", a failed connect, or a
        // session that broke under a statement (which may have been committed all the same).
        size_t fastFail = 0, connectFail = 0, midStatement = 0;
        std::string midStatementErrors;
        std::set<std::string> brokenUnder;  // instances with such an attempt
        {
            std::istringstream in(log);
            std::string line;
            while (std::getline(in, line)) {
                if (contains(line, "error while processing request")) {
                    failedOn[fieldAfter(line, "(instance ", ")")].insert(logPid(line));
                    if (contains(line, "is unavailable")) {
                        ++fastFail;
                    } else if (contains(line, "cannot connect")) {
                        ++connectFail;
                    } else {
                        brokenUnder.insert(fieldAfter(line, "(instance ", ")"));
                        if (++midStatement <= 4)
                            midStatementErrors +=
                                "    " + line.substr(line.find("(instance ")) + "\n";
                    }
                } else if (contains(line, "accounting: instance=")) {
                    answeredOn[fieldAfter(line, "instance=", ",")] = logPid(line);
                } else if (contains(line, "accounting already done for this mail")) {
                    ++skipped;
                }
            }
        }
        for (const auto& f : failedOn) {
            auto a = answeredOn.find(f.first);
            if (a == answeredOn.end()) continue;
            if (f.second.count(a->second))
                ++sameWorker;
            else
                ++otherWorker;
        }
        long long counted = std::stoll(row.at(0));
        // Counted more often than answered-minus-skipped: a failed attempt had counted after all.
        long long twice = counted - (answered.count - static_cast<long long>(skipped));
        std::string summary =
            std::string("[TestAccountingMysql] outage (on_error ") +
            (continueOnError ? "continue" : "fail") + "): " + std::to_string(msgs.size()) +
            " messages, " + std::to_string(answered.count) + " answered (" +
            std::to_string(answeredBeforeStop.count) + " before the stop), " +
            std::to_string(noReply) + " closed without reply (" + std::to_string(noReplyDuring) +
            " while down), " + std::to_string(answeredDuring) + " answered while down, " +
            std::to_string(resent) + " resent messages (answered by the worker that had failed " +
            "them: " + std::to_string(sameWorker) + ", by another: " + std::to_string(otherWorker) +
            "), " + std::to_string(skipped) + " skipped as already done, " + std::to_string(hangs) +
            " hangs, " + std::to_string(connectFailed) + " refused connects, " +
            std::to_string(gaveUp) + " given up; failed attempts: " + std::to_string(fastFail) +
            " is unavailable, " + std::to_string(connectFail) + " cannot connect, " +
            std::to_string(midStatement) + " broken under a statement; MariaDB stop " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(tDown - tStopCall).count()) +
            " ms (" + (clean ? "clean" : "SIGKILL") + "), start " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(tUp - tStartCall).count()) +
            " ms, recovery " + std::to_string(recoveryMs) + " ms; counted " +
            std::to_string(counted) + " (" + row.at(1) + " rcpt, " + row.at(2) + " bytes, " +
            row.at(3) + " size_rcpt), expected " + answered.str() +
            (continueOnError ? "" : "; counted twice: " + std::to_string(twice)) + "\n" +
            midStatementErrors;
        if (skipped > 0)
            summary +=
                "  diagnosis: Accounting marks the instance done in the worker's session "
                "(isAlreadyDone) before its update; the update failed, the mark stayed, and the "
                "resent request on the same worker was answered without counting\n";
        std::fprintf(stderr, "%s", summary.c_str());
        std::string what = summary + d_->logTail(40);

        // Every request was answered or closed without an answer; none hung, none was lost.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), hangs);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), gaveUp);
        // The daemon survived: same master, same workers, nobody died.
        CPPUNIT_ASSERT_MESSAGE(what, d_->running() && d_->pid() == master);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, pidList(workers0), pidList(d_->workers()));
        CPPUNIT_ASSERT_MESSAGE(what, !contains(log, " died"));
        // The driver logged the outage and the recovery.
        CPPUNIT_ASSERT_MESSAGE(what, contains(log, "database 'db': connection lost"));
        CPPUNIT_ASSERT_MESSAGE(what, contains(log, "database 'db': connection re-established"));
        CPPUNIT_ASSERT_MESSAGE(what, !contains(log, itest::MariaDb::kPassword));
        CPPUNIT_ASSERT_MESSAGE(what, recoveryMs >= 0 && recoveryMs <= 3000);

        if (!continueOnError) {
            // Nothing lost: every message answered "dunno" was counted, also when it was
            // answered to a resend after failed attempts.
            CPPUNIT_ASSERT_MESSAGE(what + "answered but not counted: " +
                                       std::to_string(answered.count - counted) + " messages",
                                   counted >= answered.count);
            // Nothing counted twice, except where the daemon cannot know: an attempt whose
            // session broke under the INSERT (the server shut down between executing it and
            // sending the OK) may have committed; its resend then counts the message again.
            // Any excess must be exactly such messages (a subset of them, all four counters).
            Counters excess{counted - answered.count, std::stoll(row.at(1)) - answered.rcpt,
                            std::stoll(row.at(2)) - answered.size,
                            std::stoll(row.at(3)) - answered.sizeRcpt};
            if (excess.count == 0) {
                CPPUNIT_ASSERT_EQUAL_MESSAGE(what, answered.rcpt, std::stoll(row.at(1)));
                CPPUNIT_ASSERT_EQUAL_MESSAGE(what, answered.size, std::stoll(row.at(2)));
                CPPUNIT_ASSERT_EQUAL_MESSAGE(what, answered.sizeRcpt, std::stoll(row.at(3)));
            } else {
                std::vector<const Load::Msg*> cand;
                for (const auto& inst : brokenUnder) {
                    auto it = byInstance.find(inst);
                    if (it != byInstance.end() && it->second->answered) cand.push_back(it->second);
                }
                std::string why = what + "counted twice: " + excess.str() +
                                  "; messages whose attempt broke under a statement: " +
                                  std::to_string(cand.size());
                CPPUNIT_ASSERT_MESSAGE(why, excess.count <= static_cast<long long>(cand.size()));
                CPPUNIT_ASSERT_MESSAGE(why, cand.size() <= 16);
                bool explained = false;
                for (unsigned mask = 1; mask < (1u << cand.size()) && !explained; ++mask) {
                    Counters sub;
                    for (size_t i = 0; i < cand.size(); ++i)
                        if (mask & (1u << i)) sub.add(cand[i]->rcpt, cand[i]->size);
                    explained = sub.count == excess.count && sub.rcpt == excess.rcpt &&
                                sub.size == excess.size && sub.sizeRcpt == excess.sizeRcpt;
                }
                CPPUNIT_ASSERT_MESSAGE(why, explained);
            }
            // While the server was away nothing was answered, and requests were closed
            // unanswered; they were resent until answered.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), answeredDuring);
            CPPUNIT_ASSERT_MESSAGE(what, noReplyDuring >= 1);
            CPPUNIT_ASSERT_MESSAGE(what, resent >= 1);
            CPPUNIT_ASSERT_MESSAGE(what, contains(log, "error while processing request"));
            for (const auto& m : msgs)
                CPPUNIT_ASSERT_EQUAL_MESSAGE(what + m.instance, std::string("dunno"), m.action);
        } else {
            // Mail passed while the server was away: answered, never closed without an answer.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), noReply);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), resent);
            CPPUNIT_ASSERT_MESSAGE(what, answeredDuring >= 10);
            for (const auto& m : msgs)
                CPPUNIT_ASSERT_EQUAL_MESSAGE(what + m.instance, std::string("dunno"), m.action);
            CPPUNIT_ASSERT_MESSAGE(what, contains(log, "plugin AcctIP failed"));
            CPPUNIT_ASSERT_MESSAGE(what, !contains(log, "error while processing request"));
            // Counted: everything before the stop, nothing of what was answered while the
            // server was down.
            CPPUNIT_ASSERT_MESSAGE(what, counted >= answeredBeforeStop.count);
            CPPUNIT_ASSERT_MESSAGE(
                what, counted <= answered.count - static_cast<long long>(answeredDuring));
            // Counting has resumed for good: 50 more messages on a new connection, exactly.
            std::vector<std::string> before = row;
            Counters more;
            Conn c = d_->connect();
            CPPUNIT_ASSERT_MESSAGE("connect", c.isOpen());
            for (int i = 0; i < 50; ++i) {
                std::string reply;
                long long rcpt = i % 3, size = 4000 + i;
                Conn::Status st = c.request(
                    eomRequest("cont.after." + std::to_string(i), client, rcpt, size), reply, 5000);
                CPPUNIT_ASSERT_MESSAGE(what + itest::statusName(st), st == Conn::Status::Ok);
                CPPUNIT_ASSERT_EQUAL(std::string("dunno"), itest::actionOf(reply));
                more.add(rcpt, size);
            }
            row = counterRow(client);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(std::stoll(before[0]) + more.count),
                                         row.at(0));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(std::stoll(before[1]) + more.rcpt),
                                         row.at(1));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::to_string(std::stoll(before[2]) + more.size),
                                         row.at(2));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(
                what, std::to_string(std::stoll(before[3]) + more.sizeRcpt), row.at(3));
        }
    }

    itest::MariaDb* db_ = nullptr;
    std::unique_ptr<Daemon> d_;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestAccountingMysql);
