// Integration tests: the real mtpolicyd (DaemonFixture) against hostile clients and a hostile
// environment, each checked the way an administrator would check it:
//   A. hostile input over the wire (a 10 MB line, 100,000 attributes, NUL bytes, binary junk,
//      a request in 1-byte writes, a line without '=', a flood of empty lines), while a
//      well-formed client on other connections keeps getting correct, prompt answers;
//   B. SQL metacharacters, Unicode and over-long values in every field of the accounting
//      how-to chain (SqlUserConfig -> Quota -> Accounting) against the private MariaDB: no
//      injection, keys stored byte for byte (over 255 bytes: shortened, mtp::fitKey), counts
//      exact;
//   C. 2,000 idle keep-alive connections and 200 clients sending a byte a second do not slow
//      a normal client down; request_timeout and keepalive_timeout close them on time;
//   D. descriptor exhaustion under RLIMIT_NOFILE 64: logged (rate-limited), no crash, no spin,
//      and service resumes once the extra connections are gone;
//   E. privileges: started as root with user/group set, no process keeps root; pid file, unix
//      socket and log file have sane owners and modes; a database password never appears in
//      the log or in --dump-config.
//
// Ownership: every test starts its own daemon in its own temp dir (tearDown stops it and
// removes the dir); client threads are joined before a test ends; B uses the shared private
// MariaDB of the test program. Only loopback TCP and unix sockets in the temp dir are used.
#include <cppunit/extensions/HelperMacros.h>

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
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
#include "mtpolicyd/util/Strings.h"

using itest::Clock;
using itest::Conn;
using itest::Daemon;

namespace {

using itest::sleepMs;
using itest::pidList;
using itest::localPort;

using itest::confString;
using itest::sqlStatements;
using itest::srcdir;

double msBetween(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

std::string globals(int logLevel) {
    return "\nlog_file = \"@LOG@\";\npid_file = \"@PID@\";\nlog_level = " +
           std::to_string(logLevel) + ";\n";
}

// One vhost on PORT1: "reject special sender" for sender=special@example.com, else dunno.
const std::string kSimpleVhost = R"(
virtual_hosts = (
  { name = "main"; port = "@PORT1@";
    plugins = (
      { name = "special"; module = "Condition"; key = "sender"; match = "special@example.com";
        action = "reject special sender"; }
    ); }
);
)";

const std::string kSpecialReq = itest::makeRequest({{"sender", "special@example.com"}});
const std::string kPlainReq = itest::makeRequest({{"sender", "someone@example.com"}});
const std::string kSpecialReply = "action=reject special sender\n\n";
const std::string kPlainReply = "action=dunno\n\n";

std::string describe(Conn::Status st, const std::string& reply) {
    std::string shown = reply.size() > 200 ? reply.substr(0, 200) + "..." : reply;
    return std::string(itest::statusName(st)) + ", reply '" + shown + "'";
}

// The q-quantile (0 < q <= 1) of `v` (nearest rank).
double quantile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

std::string fmtMs(double ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f ms", ms);
    return buf;
}

// utime + stime of a process in clock ticks, or -1.
long cpuTicks(pid_t pid) {
    std::string text = itest::readFile("/proc/" + std::to_string(pid) + "/stat");
    size_t close = text.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream in(text.substr(close + 1));
    std::vector<std::string> f;
    std::string tok;
    while (in >> tok) f.push_back(tok);
    // f[0] is field 3 (state); utime and stime are fields 14 and 15.
    if (f.size() < 13) return -1;
    return std::atol(f[11].c_str()) + std::atol(f[12].c_str());
}

// The numbers of a /proc/PID/status line such as "Uid:" (real, effective, saved, fs).
std::vector<long> statusIds(pid_t pid, const std::string& key) {
    std::istringstream in(itest::readFile("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    std::vector<long> out;
    while (std::getline(in, line)) {
        if (line.compare(0, key.size(), key) != 0) continue;
        std::istringstream f(line.substr(key.size()));
        long v;
        while (f >> v) out.push_back(v);
        break;
    }
    return out;
}

// The soft limit of "Max open files" in /proc/PID/limits, or -1.
long softFdLimit(pid_t pid) {
    std::istringstream in(itest::readFile("/proc/" + std::to_string(pid) + "/limits"));
    std::string line;
    while (std::getline(in, line))
        if (line.compare(0, 14, "Max open files") == 0) return std::atol(line.substr(14).c_str());
    return -1;
}

std::string hexOf(const std::string& s) {
    static const char* d = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}




// Sets an environment variable for the lifetime of the object, then restores it.
class EnvOverride {
  public:
    EnvOverride(const char* name, const std::string& value) : name_(name) {
        const char* old = std::getenv(name);
        had_ = old != nullptr;
        if (had_) old_ = old;
        setenv(name, value.c_str(), 1);
    }
    ~EnvOverride() {
        if (had_)
            setenv(name_, old_.c_str(), 1);
        else
            unsetenv(name_);
    }

  private:
    const char* name_;
    bool had_ = false;
    std::string old_;
};

// A well-formed client: `conns` keep-alive connections used in turn, one request every
// `paceMs`, alternating a request the chain rejects and one it answers dunno; every reply is
// checked byte for byte and its latency recorded.
class Prober {
  public:
    Prober(int port, int conns, int paceMs, int nice = 0)
        : port_(port), paceMs_(paceMs), nice_(nice), conns_(conns) {}
    ~Prober() { stop(); }

    // Connects every connection; "" or an error.
    std::string start() {
        for (auto& c : conns_)
            if (!c.connectTcp(port_))
                return std::string("prober connect: ") + std::strerror(c.lastErrno());
        thread_ = std::thread([this] { run(); });
        return "";
    }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    size_t ok() const { return ok_.load(); }
    size_t failed() const { return failed_.load(); }
    std::string firstFailure() const {
        std::lock_guard<std::mutex> lk(mu_);
        return firstFailure_;
    }
    // The latencies (ms) recorded since the last call.
    std::vector<double> take() {
        std::vector<double> out;
        for (const auto& s : takeTimed()) out.push_back(s.ms);
        return out;
    }
    struct Sample {
        Clock::time_point sent;
        double ms;
    };
    std::vector<Sample> takeTimed() {
        std::lock_guard<std::mutex> lk(mu_);
        std::vector<Sample> out;
        out.swap(lat_);
        return out;
    }
    // Whether every connection is still open (call after stop()).
    bool allOpen() {
        for (auto& c : conns_)
            if (!c.peerOpen()) return false;
        return true;
    }

  private:
    void run() {
        // Best effort (root only): a latency measurement that other programs on a shared
        // machine disturb less.
        if (nice_ != 0) setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice_);
        for (size_t i = 0; !stop_; ++i) {
            Conn& c = conns_[i % conns_.size()];
            bool special = i % 2 == 1;
            std::string reply;
            auto t0 = Clock::now();
            Conn::Status st = c.request(special ? kSpecialReq : kPlainReq, reply, 5000);
            double ms = msBetween(t0, Clock::now());
            const std::string& want = special ? kSpecialReply : kPlainReply;
            if (st == Conn::Status::Ok && reply == want) {
                std::lock_guard<std::mutex> lk(mu_);
                lat_.push_back({t0, ms});
                ++ok_;
            } else {
                std::lock_guard<std::mutex> lk(mu_);
                if (failed_++ == 0)
                    firstFailure_ = "request " + std::to_string(i) + " on connection " +
                                    std::to_string(i % conns_.size()) + ": " + describe(st, reply);
            }
            if (paceMs_ > 0) sleepMs(paceMs_);
        }
    }

    int port_, paceMs_, nice_;
    std::vector<Conn> conns_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<size_t> ok_{0}, failed_{0};
    mutable std::mutex mu_;
    std::string firstFailure_;
    std::vector<Sample> lat_;
};

// Watches many client sockets with epoll until the peer closes each: records when, and any
// data that arrived before.
class CloseWatcher {
  public:
    struct Entry {
        int fd;
        Clock::time_point closedAt{};
        std::string data;
    };

    explicit CloseWatcher(std::vector<int> fds) : closed_(new std::atomic<bool>[fds.size()]()) {
        for (int fd : fds) entries_.push_back({fd, {}, {}});
    }
    ~CloseWatcher() { stop(); }

    void start(int timeoutMs) {
        thread_ = std::thread([this, timeoutMs] { run(timeoutMs); });
    }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    bool closed(size_t i) const { return closed_[i].load(); }
    size_t closedCount() const { return closedCount_.load(); }
    // Only after stop().
    const Entry& entry(size_t i) const { return entries_[i]; }
    size_t size() const { return entries_.size(); }

  private:
    void run(int timeoutMs) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0) return;
        for (size_t i = 0; i < entries_.size(); ++i) {
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.u64 = i;
            epoll_ctl(ep, EPOLL_CTL_ADD, entries_[i].fd, &ev);
        }
        auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
        std::vector<epoll_event> evs(256);
        char buf[4096];
        while (!stop_ && closedCount_ < entries_.size() && Clock::now() < deadline) {
            int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 20);
            for (int k = 0; k < n; ++k) {
                size_t i = evs[k].data.u64;
                Entry& e = entries_[i];
                for (;;) {
                    ssize_t r = ::recv(e.fd, buf, sizeof buf, MSG_DONTWAIT);
                    if (r > 0) {
                        e.data.append(buf, static_cast<size_t>(r));
                        continue;
                    }
                    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                    if (r < 0 && errno == EINTR) continue;
                    e.closedAt = Clock::now();  // EOF or reset
                    epoll_ctl(ep, EPOLL_CTL_DEL, e.fd, nullptr);
                    closed_[i] = true;
                    ++closedCount_;
                    break;
                }
            }
        }
        ::close(ep);
    }

    std::vector<Entry> entries_;
    std::unique_ptr<std::atomic<bool>[]> closed_;
    std::atomic<size_t> closedCount_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace

class TestHostile : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestHostile);
    CPPUNIT_TEST(testHostileInput);
    CPPUNIT_TEST(testSqlMetacharacters);
    CPPUNIT_TEST(testSlowAndIdleClients);
    CPPUNIT_TEST(testFdExhaustion);
    CPPUNIT_TEST(testPrivileges);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override { d_ = std::make_unique<Daemon>(); }
    void tearDown() override { d_.reset(); }

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

    // A. Hostile input, each case on its own connection, while a well-formed client on four
    //    other keep-alive connections (spread over both workers) keeps sending requests.
    //    Each hostile connection is closed without a reply and its error logged, naming the
    //    connection; a request written one byte at a time is answered correctly; a flood of
    //    empty lines runs no chain and floods no log; nothing crashes; the well-formed client
    //    gets every answer right and promptly.
    void testHostileInput() {
        start(globals(2) + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
max_requests = 0; request_timeout = 10; keepalive_timeout = 60;
)" + kSimpleVhost);
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitWorkers(2, 3000));
        const pid_t master = d_->pid();
        const std::vector<pid_t> workers0 = d_->workers();

        Prober good(d_->port(1), 4, 5);
        std::string err = good.start();
        CPPUNIT_ASSERT_MESSAGE(err, err.empty());
        CPPUNIT_ASSERT_MESSAGE("the well-formed client got no answers: " + good.firstFailure(),
                               itest::waitFor([&] { return good.ok() >= 40; }, 3000));

        struct Case {
            std::string what;
            std::string data;
            std::string reason;  // the error the log must give for this connection ("" any)
        };
        std::vector<Case> cases;
        cases.push_back({"10 MB line",
                         "request=smtpd_access_policy\nsender=" + std::string(10 << 20, 'x') +
                             "\n\n",
                         "line too long (max_line_length 16384)"});
        {
            std::string many = "request=smtpd_access_policy\n";
            for (int i = 0; i < 100000; ++i) many += "a" + std::to_string(i) + "=v\n";
            many += "\n";
            cases.push_back({"100,000 attributes", many, "too many attributes (max_attributes 1024)"});
        }
        {
            std::string big = "request=smtpd_access_policy\n";
            for (int i = 0; i < 200; ++i) big += "x" + std::to_string(i) + "=" + std::string(1000, 'v') + "\n";
            big += "\n";
            cases.push_back({"200 kB request", big, "request too large (max_request_size 131072)"});
        }
        {
            std::string nul = "request=smtpd_access_policy\nsender=a";
            nul += '\0';
            nul += "b@example.com\nclient_address=192.0.2.1\n\n";
            cases.push_back({"NUL byte inside a line", nul, "NUL byte in request line"});
            std::string nulName = "request=smtpd_access_policy\nsen";
            nulName += '\0';
            nulName += "der=a@example.com\n\n";
            cases.push_back({"NUL byte inside a name", nulName, "NUL byte in request line"});
        }
        {
            std::mt19937 rng(20261126);
            std::string junk;
            for (int i = 0; i < 65536; ++i) junk += static_cast<char>(rng() & 0xff);
            junk += "\r\n\xff\xfe\x80\r\n\n";
            cases.push_back({"64 kB of random bytes", junk, ""});
            std::string high;
            for (int i = 0; i < 2000; ++i) high += static_cast<char>(0x80 + (rng() % 0x80));
            high += "\r\n\r\n";
            cases.push_back({"high bytes and CRLF", high, "error parsing request: line without '='"});
        }
        cases.push_back({"attribute without '='",
                         "request=smtpd_access_policy\nsender\nclient_address=192.0.2.1\n\n",
                         "error parsing request: line without '='"});
        cases.push_back({"an HTTP request", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
                         "error parsing request: line without '='"});
        cases.push_back({"1,000,000 empty lines", std::string(1000000, '\n'), "empty request"});
        cases.push_back({"empty lines after a request",
                         "request=smtpd_access_policy\nsender=special@example.com\n\n" +
                             std::string(100000, '\n'),
                         "empty request"});

        std::string summary;
        for (const auto& cs : cases) {
            size_t logFrom = d_->logSize();
            Conn bad = mustConnect();
            const int port = localPort(bad.fd());
            auto t0 = Clock::now();
            bad.send(cs.data, 10000);  // fails half-way when the daemon has closed already
            std::string got;
            Conn::Status st = bad.waitClosed(5000, &got);
            long ms = itest::elapsedMs(t0);
            summary += "  " + cs.what + ": closed after " + std::to_string(ms) + " ms\n";
            // The only reply allowed is the one to the valid request in front of the empty lines.
            std::string expectGot = contains(cs.what, "after a request") ? kSpecialReply : "";
            CPPUNIT_ASSERT_MESSAGE(cs.what + ": connection not closed: " + describe(st, got),
                                   st == Conn::Status::Closed);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(cs.what + ": unexpected reply", expectGot, got);
            // Logged as an error that names this connection and the reason.
            const std::string needle =
                "error while reading request from 127.0.0.1:" + std::to_string(port) + ": " + cs.reason;
            CPPUNIT_ASSERT_MESSAGE(cs.what + ": no '" + needle + "' in the log:\n" + d_->logTail(),
                                   d_->waitLog(needle, 2000, logFrom));
            std::string log = d_->log().substr(logFrom);
            size_t at = log.find(needle);
            size_t bol = log.rfind('\n', at);
            std::string line = log.substr(bol == std::string::npos ? 0 : bol + 1,
                                          log.find('\n', at) - (bol == std::string::npos ? 0 : bol + 1));
            CPPUNIT_ASSERT_MESSAGE(cs.what + ": not logged as an error: " + line,
                                   contains(line, ": error: "));
            // No chain ran for it: no per-request line for an empty request.
            CPPUNIT_ASSERT_MESSAGE(cs.what + ": a chain ran for an empty request:\n" + d_->logTail(),
                                   !contains(log, "instance=, type=, client=,"));
            // Logged once, not once per line or per read.
            const std::string peer = "127.0.0.1:" + std::to_string(port) + ": ";
            CPPUNIT_ASSERT_EQUAL_MESSAGE(cs.what + ": log lines naming " + peer, size_t(1),
                                         itest::countOf(log, peer));
            CPPUNIT_ASSERT_MESSAGE(cs.what + ": the well-formed client failed: " + good.firstFailure(),
                                   good.failed() == 0);
            CPPUNIT_ASSERT_MESSAGE(cs.what + ": master gone\n" + d_->logTail(), d_->running());
        }

        // A valid request written one byte at a time (a write per byte, 1 ms apart, no Nagle)
        // is answered correctly, and only once its final empty line has arrived; twice on the
        // same connection, the second with CRLF line ends.
        {
            Conn slow = mustConnect();
            for (int round = 0; round < 2; ++round) {
                std::string req = itest::makeRequest({{"protocol_state", "RCPT"},
                                                      {"client_address", "192.0.2.77"},
                                                      {"sender", "special@example.com"},
                                                      {"recipient", "rcpt@example.org"},
                                                      {"instance", "split." + std::to_string(round)}});
                if (round == 1) {
                    std::string crlf;
                    for (char ch : req) crlf += ch == '\n' ? std::string("\r\n") : std::string(1, ch);
                    req = crlf;
                }
                for (size_t i = 0; i + 1 < req.size(); ++i) {
                    CPPUNIT_ASSERT_MESSAGE("1-byte write " + std::to_string(i),
                                           slow.send(std::string(1, req[i])));
                    sleepMs(1);
                }
                std::string early;
                Conn::Status est = slow.readReply(early, 200);
                CPPUNIT_ASSERT_MESSAGE("before the request was complete: " + describe(est, early),
                                       est == Conn::Status::Timeout && early.empty());
                CPPUNIT_ASSERT(slow.send(std::string(1, req.back())));
                std::string reply;
                Conn::Status st = slow.readReply(reply, 3000);
                CPPUNIT_ASSERT_MESSAGE("1-byte split request, round " + std::to_string(round) + ": " +
                                           describe(st, reply) + "\n" + d_->logTail(),
                                       st == Conn::Status::Ok);
                CPPUNIT_ASSERT_EQUAL(kSpecialReply, reply);
            }
            CPPUNIT_ASSERT(slow.peerOpen());
        }

        good.stop();
        std::vector<double> lat = good.take();
        double p50 = quantile(lat, 0.5), p99 = quantile(lat, 0.99), worst = quantile(lat, 1.0);
        std::fprintf(stderr,
                     "[TestHostile] hostile input: well-formed client %zu answers, %zu failed, "
                     "latency p50 %s p99 %s max %s\n%s",
                     good.ok(), good.failed(), fmtMs(p50).c_str(), fmtMs(p99).c_str(),
                     fmtMs(worst).c_str(), summary.c_str());
        CPPUNIT_ASSERT_MESSAGE("well-formed client: " + good.firstFailure(), good.failed() == 0);
        CPPUNIT_ASSERT_MESSAGE("well-formed client answered only " + std::to_string(good.ok()),
                               good.ok() >= 50);
        CPPUNIT_ASSERT_MESSAGE("a well-formed connection was closed", good.allOpen());
        // Its connections were served by both workers, so every hostile connection shared a
        // worker (and its event loop) with well-formed ones.
        {
            std::set<std::string> servers;
            std::istringstream in(d_->log());
            std::string line;
            while (std::getline(in, line)) {
                size_t at = line.find("]: warning: main: instance=, type=smtpd_access_policy, client=, ");
                size_t open = line.find(" mtpolicyd[");
                if (at != std::string::npos && open != std::string::npos && open < at)
                    servers.insert(line.substr(open + 11, at - open - 11));
            }
            CPPUNIT_ASSERT_EQUAL_MESSAGE("workers that served the well-formed client", size_t(2),
                                         servers.size());
        }
        CPPUNIT_ASSERT_MESSAGE("well-formed client p99 " + fmtMs(p99), p99 < 100);
        CPPUNIT_ASSERT_MESSAGE("well-formed client max " + fmtMs(worst), worst < 1000);

        // Nothing crashed: the same master and the same two workers, none died.
        CPPUNIT_ASSERT(d_->running());
        CPPUNIT_ASSERT_EQUAL(master, d_->pid());
        CPPUNIT_ASSERT_EQUAL_MESSAGE(d_->logTail(), pidList(workers0), pidList(d_->workers()));
        const std::string log = d_->log();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, " died"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, "internal error"));
        Conn after = mustConnect();
        std::string reply;
        CPPUNIT_ASSERT_EQUAL(Conn::Status::Ok, after.request(kSpecialReq, reply));
        CPPUNIT_ASSERT_EQUAL(kSpecialReply, reply);
    }

    // B. SQL metacharacters, Unicode and long values in client_address, sender, sasl_username
    //    and instance, through the how-to chain on the private MariaDB.
    void testSqlMetacharacters() {
        itest::MariaDb& db = itest::sharedMariaDb();
        db.start();
        // A clean database with the tables of sql/mysql.sql (relay_hosts is dropped before
        // relay_policies, which it references: SHOW TABLES sorts them that way).
        {
            std::string all;
            for (const auto& row : db.rootQuery("SHOW TABLES")) all += (all.empty() ? "`" : ", `") + row.at(0) + "`";
            if (!all.empty()) db.rootExec("DROP TABLE IF EXISTS " + all);
            std::string file = srcdir() + "/sql/mysql.sql";
            std::string sql = itest::readFile(file);
            CPPUNIT_ASSERT_MESSAGE("cannot read " + file + " (set MTPOLICYD_SRCDIR)", !sql.empty());
            for (const auto& s : sqlStatements(sql)) db.rootExec(s);
        }
        std::set<std::string> tablesBefore;
        for (const auto& row : db.rootQuery("SHOW TABLES")) tablesBefore.insert(row.at(0));
        const std::string kCoin = "defer you exceeded your monthly limit, please insert coin";
        // Per-client limits. A host whose address is itself full of metacharacters has a limit
        // of 1; the injection classic would match every row if the value were pasted into the
        // query, and would then get that limit too.
        const std::string oHara = "o'hara\\\";-- `x` %_";
        db.rootExec(
            "INSERT INTO relay_policies (id, name, config) VALUES "
            "(1, 'one', '{\"quota_count\":\"1\"}'), (2, X'" + hexOf("it's \"odd\"; --") +
            "', '{\"quota_count\":\"1000\"}')");
        db.rootExec("INSERT INTO relay_hosts (client_address, relay_policy) VALUES (X'" +
                    hexOf(oHara) + "', 1), ('192.0.2.50', 1), ('192.0.2.51', 2)");
        const std::string hostsSql =
            "SELECT id, HEX(client_address), relay_policy FROM relay_hosts ORDER BY id";
        const std::string policiesSql =
            "SELECT id, HEX(name), HEX(config) FROM relay_policies ORDER BY id";
        const auto hostsBefore = db.rootQuery(hostsSql);
        const auto policiesBefore = db.rootQuery(policiesSql);

        start(globals(2) + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
max_requests = 0; request_timeout = 10;
connections = {
  db = { module = "Sql"; dsn = )" + confString(db.dsn()) +
              "; user = " + confString(itest::MariaDb::kUser) +
              "; password = " + confString(itest::MariaDb::kPassword) + R"(;
         connect_timeout = 5; read_timeout = 10; write_timeout = 10; };
};
virtual_hosts = (
  { name = "accounting"; port = "@PORT1@";
    plugins = (
      { name = "QuotaPolicyConfig"; module = "SqlUserConfig";
        sql_query = "SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id) WHERE h.client_address=?";
        field = "client_address"; },
      { name = "QuotaIP"; module = "Quota"; field = "client_address"; metric = "count";
        threshold = 1000; uc_threshold = "quota_count";
        action = "defer you exceeded your monthly limit, please insert coin"; },
      { name = "QuotaUser"; module = "Quota"; field = "sasl_username"; metric = "count";
        threshold = 1000; action = "defer user over quota"; },
      { name = "AcctIP"; module = "Accounting"; fields = "client_address, sasl_username, sender"; }
    ); }
);
)");

        std::vector<std::string> values = {
            "'",
            "\\",
            "back\\slash\\'",
            "x;--",
            ";-- comment",
            "100%",
            "%",
            "_",
            "a_b%c",
            "`acct_client_address`",
            "' OR '1'='1",
            "\" OR \"\"=\"",
            "'); DROP TABLE acct_client_address; --",
            "1; DELETE FROM relay_hosts; SELECT '",
            "\\'; DROP TABLE relay_policies; -- \\",
            "M\xc3\xbcller Jos\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",  // Müller José 日本語
            "\xf0\x9f\x93\xa7\xf0\x9f\x94\xa5 mail",                           // 📧🔥 mail
            "tab\there",
            "\xe2\x80\xae\xe2\x80\x8b zero-width",  // RTL override, zero-width space
        };
        // 255 characters fit the key columns (VARCHAR(255) of utf8mb4), but Accounting limits
        // keys to 255 bytes: 255 4-byte emoji (1020 bytes) are counted under a shortened key
        // (mtp::fitKey: the first 200 bytes, "~", a hash of the whole value).
        std::string emoji255;
        for (int i = 0; i < 255; ++i) emoji255 += "\xf0\x9f\x98\x80";  // 😀
        values.push_back(emoji255);
        std::string quotes255(255, '\'');
        values.push_back(quotes255);

        struct Sent {
            std::map<std::string, long> client, user, sender;
        } expect;
        std::set<std::string> sentInstances, countedInstances;
        Conn c = mustConnect();
        int n = 0;
        auto send = [&](const std::string& client, const std::string& user,
                        const std::string& sender, const std::string& instance) {
            std::string req = itest::makeRequest({{"protocol_state", "END-OF-MESSAGE"},
                                                  {"protocol_name", "ESMTP"},
                                                  {"client_address", client},
                                                  {"client_name", "unknown"},
                                                  {"sasl_username", user},
                                                  {"sender", sender},
                                                  {"recipient_count", "1"},
                                                  {"size", "1000"},
                                                  {"instance", instance}});
            std::string reply;
            sentInstances.insert(instance);
            Conn::Status st = c.request(req, reply, 10000);
            CPPUNIT_ASSERT_MESSAGE("client '" + client + "', instance '" + instance + "': " +
                                       describe(st, reply) + "\n" + d_->logTail(),
                                   st == Conn::Status::Ok);
            return itest::actionOf(reply);
        };
        std::string userSuffix = "@sasl.example";
        std::string senderSuffix = "@example.org";
        for (size_t i = 0; i < values.size(); ++i) {
            const std::string& v = values[i];
            int messages = static_cast<int>(i % 3) + 1;
            // The values of sasl_username and sender: the value plus a suffix, without it for
            // the long values.
            std::string user = v.size() > 200 ? v : v + userSuffix;
            std::string sender = v.size() > 200 ? v : v + senderSuffix;
            for (int m = 0; m < messages; ++m) {
                std::string instance = v + "#" + std::to_string(++n);
                std::string action = send(v, user, sender, instance);
                CPPUNIT_ASSERT_EQUAL_MESSAGE("value #" + std::to_string(i) + " '" + v + "'",
                                             std::string("dunno"), action);
                countedInstances.insert(instance);
                ++expect.client[mtp::fitKey(v, 255)];
                ++expect.user[mtp::fitKey(user, 255)];
                ++expect.sender[mtp::fitKey(sender, 255)];
            }
        }
        // The host with the metacharacter address has a limit of 1; 192.0.2.50 too.
        for (const std::string& host : {oHara, std::string("192.0.2.50")}) {
            CPPUNIT_ASSERT_EQUAL_MESSAGE(host, std::string("dunno"),
                                         send(host, "u" + userSuffix, "s" + senderSuffix,
                                              host + "#limit1"));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(host, kCoin,
                                         send(host, "u" + userSuffix, "s" + senderSuffix,
                                              host + "#limit2"));
            countedInstances.insert(host + "#limit1");
            ++expect.client[host];
            expect.user["u" + userSuffix] += 1;
            expect.sender["s" + senderSuffix] += 1;
        }
        // A 400-character instance full of metacharacters (recorded shortened to 128 bytes).
        std::string longInstance;
        while (longInstance.size() < 400) longInstance += "'\\;--`%_\"";
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"),
                             send("192.0.2.99", "long-instance" + userSuffix,
                                  "long-instance" + senderSuffix, longInstance));
        ++expect.client["192.0.2.99"];
        ++expect.user["long-instance" + userSuffix];
        ++expect.sender["long-instance" + senderSuffix];
        CPPUNIT_ASSERT_MESSAGE("the keep-alive connection was closed", c.peerOpen());

        // Values longer than the key columns (300 characters): counted under a shortened key
        // (the first 200 bytes, "~", a hash of the whole value), as MariaDB in strict mode
        // would refuse the whole value ("Data too long") and the request would fail; the
        // first one of each field is logged as a warning (by each worker).
        std::string long300;
        while (long300.size() < 300) long300 += "'); DROP TABLE relay_hosts; -- ";
        long300.resize(300);
        std::string longReport;
        struct LongCase {
            const char* field;
            std::string client, user, sender;
        };
        const std::vector<LongCase> longCases = {
            {"client_address", long300, "", ""},
            {"sasl_username", "", long300, ""},
            {"sender", "", "", long300},
        };
        for (const auto& lc : longCases) {
            size_t logFrom = d_->logSize();
            Conn lconn = mustConnect();
            std::vector<std::pair<std::string, std::string>> attrs = {
                {"protocol_state", "END-OF-MESSAGE"}, {"recipient_count", "1"}, {"size", "10"},
                {"instance", std::string("long-") + lc.field}};
            if (!lc.client.empty()) attrs.push_back({"client_address", lc.client});
            if (!lc.user.empty()) attrs.push_back({"sasl_username", lc.user});
            if (!lc.sender.empty()) attrs.push_back({"sender", lc.sender});
            std::string reply;
            std::string instance = std::string("long-") + lc.field;
            sentInstances.insert(instance);
            Conn::Status st = lconn.request(itest::makeRequest(attrs), reply, 10000);
            CPPUNIT_ASSERT_MESSAGE(std::string("300-character ") + lc.field + ": " + describe(st, reply) + "\n" +
                                       d_->logTail(),
                                   st == Conn::Status::Ok && itest::actionOf(reply) == "dunno");
            countedInstances.insert(instance);
            if (!lc.client.empty()) ++expect.client[mtp::fitKey(lc.client, 255)];
            if (!lc.user.empty()) ++expect.user[mtp::fitKey(lc.user, 255)];
            if (!lc.sender.empty()) ++expect.sender[mtp::fitKey(lc.sender, 255)];
            // Once per worker and field: maybe for the 1020-byte value above already.
            const std::string warning = std::string("plugin AcctIP: ") + lc.field + ": a value of ";
            CPPUNIT_ASSERT_MESSAGE(std::string("300-character ") + lc.field + ": not logged\n" + d_->logTail(),
                                   d_->waitLog(warning, 2000, 0));
            std::string log = d_->log();
            CPPUNIT_ASSERT_MESSAGE(log, !contains(log.substr(logFrom), "error while processing request"));
            longReport += std::string("  300-character ") + lc.field + ": answered, counted under a key of " +
                          std::to_string(mtp::fitKey(long300, 255).size()) + " bytes\n";
        }
        std::fprintf(stderr, "[TestHostile] SQL: %d messages with metacharacter values answered\n%s",
                     n + 5, longReport.c_str());

        // No injection: every table is still there, the only new ones are those Accounting
        // creates itself (acct_sender; its instance table, should the schema lack it), and
        // relay_hosts / relay_policies are unchanged.
        std::set<std::string> tables;
        for (const auto& row : db.rootQuery("SHOW TABLES")) tables.insert(row.at(0));
        std::string tableList = "before:";
        for (const auto& t : tablesBefore) tableList += " " + t;
        tableList += "; after:";
        for (const auto& t : tables) tableList += " " + t;
        for (const auto& t : tablesBefore) CPPUNIT_ASSERT_MESSAGE(t + " is gone; " + tableList, tables.count(t) == 1);
        for (const auto& t : tables)
            CPPUNIT_ASSERT_MESSAGE("new table " + t + "; " + tableList,
                                   tablesBefore.count(t) || t == "acct_sender" || t == "acct_instances");
        CPPUNIT_ASSERT_MESSAGE(tableList, tables.count("acct_sender") == 1);
        CPPUNIT_ASSERT_MESSAGE("relay_hosts changed", db.rootQuery(hostsSql) == hostsBefore);
        CPPUNIT_ASSERT_MESSAGE("relay_policies changed", db.rootQuery(policiesSql) == policiesBefore);

        // The counters: exactly the keys sent, byte for byte, each with its message count.
        auto check = [&](const std::string& table, const std::map<std::string, long>& want) {
            std::map<std::string, long> got;
            for (const auto& row : db.rootQuery("SELECT HEX(`key`), `count` FROM " + table))
                got[row.at(0)] += std::atol(row.at(1).c_str());
            std::map<std::string, long> wantHex;
            for (const auto& kv : want) wantHex[hexOf(kv.first)] = kv.second;
            std::string diff;
            for (const auto& kv : wantHex) {
                auto it = got.find(kv.first);
                if (it == got.end())
                    diff += "  missing key " + kv.first + "\n";
                else if (it->second != kv.second)
                    diff += "  key " + kv.first + ": count " + std::to_string(it->second) +
                            ", expected " + std::to_string(kv.second) + "\n";
            }
            for (const auto& kv : got)
                if (!wantHex.count(kv.first)) diff += "  unexpected key " + kv.first + "\n";
            CPPUNIT_ASSERT_MESSAGE(table + ":\n" + diff, diff.empty());
        };
        check("acct_client_address", expect.client);
        check("acct_sasl_username", expect.user);
        check("acct_sender", expect.sender);
        // The instances Accounting records (to count a message once across workers), if it
        // does: byte for byte those sent (longer than 128 bytes: shortened by mtp::fitKey);
        // every counted one of up to 100 bytes is there.
        if (tables.count("acct_instances")) {
            std::set<std::string> sentHex, recorded;
            for (const auto& i : sentInstances) sentHex.insert(hexOf(mtp::fitKey(i, 128)));
            for (const auto& row : db.rootQuery("SELECT HEX(instance) FROM acct_instances"))
                recorded.insert(row.at(0));
            for (const auto& h : recorded)
                CPPUNIT_ASSERT_MESSAGE("acct_instances holds an instance never sent: " + h, sentHex.count(h));
            for (const auto& i : countedInstances)
                if (i.size() <= 100)
                    CPPUNIT_ASSERT_MESSAGE("counted instance '" + i + "' not in acct_instances",
                                           recorded.count(hexOf(i)));
        }

        const std::string log = d_->log();
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, itest::MariaDb::kPassword));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(log, " died"));
        CPPUNIT_ASSERT(d_->running());
    }

    // C. 2,000 idle keep-alive connections (each answered once) and 200 clients sending one
    //    byte a second do not slow a normal client down: its p99 latency stays within 10 ms
    //    of its p99 without them. request_timeout = 2 closes the slow clients ~2 s after
    //    their first byte, keepalive_timeout = 3 the idle ones ~3 s after their answer; none
    //    of them gets a reply.
    void testSlowAndIdleClients() {
        const int kIdle = 2000, kSlow = 200;
        rlim_t lim = itest::raiseFdLimit(kIdle + kSlow + 400);
        CPPUNIT_ASSERT_MESSAGE("RLIMIT_NOFILE too low: " + std::to_string(lim),
                               lim >= static_cast<rlim_t>(kIdle + kSlow + 300));
        start(globals(3) + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
max_requests = 0; request_timeout = 2; keepalive_timeout = 3;
)" + kSimpleVhost);
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitWorkers(2, 3000));

        // The normal client alone. It and the daemon run at nice -10 where allowed (root), so
        // that what is measured is the daemon, not the other load of a shared machine.
        for (pid_t p : d_->allProcesses()) setpriority(PRIO_PROCESS, static_cast<id_t>(p), -10);
        Prober normal(d_->port(1), 1, 1, -10);
        std::string err = normal.start();
        CPPUNIT_ASSERT_MESSAGE(err, err.empty());
        sleepMs(2500);
        std::vector<double> base = normal.take();
        CPPUNIT_ASSERT_MESSAGE("normal client: " + normal.firstFailure(), normal.failed() == 0);

        // 2,000 connections, one request each, sent together and then collected.
        std::vector<Conn> idle(kIdle);
        std::vector<Clock::time_point> idleSent(kIdle), idleAnswered(kIdle);
        for (int i = 0; i < kIdle; ++i)
            CPPUNIT_ASSERT_MESSAGE("connect idle #" + std::to_string(i) + ": " +
                                       std::strerror(idle[i].lastErrno()),
                                   idle[i].connectTcp(d_->port(1)));
        for (int i = 0; i < kIdle; ++i) {
            idleSent[i] = Clock::now();
            CPPUNIT_ASSERT(idle[i].send(kSpecialReq));
        }
        for (int i = 0; i < kIdle; ++i) {
            std::string reply;
            Conn::Status st = idle[i].readReply(reply, 5000);
            idleAnswered[i] = Clock::now();
            CPPUNIT_ASSERT_MESSAGE("idle #" + std::to_string(i) + ": " + describe(st, reply),
                                   st == Conn::Status::Ok && reply == kSpecialReply);
        }
        // 200 slow clients: a valid request, one byte a second.
        std::vector<Conn> slow(kSlow);
        for (int i = 0; i < kSlow; ++i)
            CPPUNIT_ASSERT_MESSAGE("connect slow #" + std::to_string(i),
                                   slow[i].connectTcp(d_->port(1)));
        size_t logFrom = d_->logSize();
        std::vector<int> fds;
        for (auto& c : idle) fds.push_back(c.fd());
        for (auto& c : slow) fds.push_back(c.fd());
        CloseWatcher watcher(fds);
        watcher.start(12000);
        std::vector<Clock::time_point> slowFirst(kSlow);
        std::atomic<bool> stopSlow{false};
        std::thread slowSender([&] {
            const std::string req = kPlainReq;
            for (size_t k = 0; k < req.size() && !stopSlow; ++k) {
                auto tick = Clock::now();
                for (int i = 0; i < kSlow; ++i) {
                    if (watcher.closed(kIdle + i)) continue;
                    if (k == 0) slowFirst[i] = Clock::now();
                    ::send(slow[i].fd(), req.data() + k, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                while (!stopSlow && Clock::now() < tick + std::chrono::seconds(1)) sleepMs(10);
            }
        });
        struct Joiner {
            std::atomic<bool>& stop;
            std::thread& t;
            ~Joiner() {
                stop = true;
                if (t.joinable()) t.join();
            }
        } joiner{stopSlow, slowSender};

        // The normal client under that load, until every slow and idle connection is closed.
        normal.take();  // drop what was measured while the idle connections were set up
        auto loadStart = Clock::now();
        bool allClosed = itest::waitFor([&] { return watcher.closedCount() == fds.size(); }, 9000, 20);
        long loadMs = itest::elapsedMs(loadStart);
        normal.stop();
        std::vector<Prober::Sample> loadedTimed = normal.takeTimed();
        std::vector<double> loaded;
        for (const auto& x : loadedTimed) loaded.push_back(x.ms);
        std::sort(loadedTimed.begin(), loadedTimed.end(),
                  [](const Prober::Sample& a, const Prober::Sample& b) { return a.ms > b.ms; });
        std::string slowest = "  slowest requests under load (ms after the load began: latency):";
        for (size_t i = 0; i < loadedTimed.size() && i < 8; ++i)
            slowest += " " + std::to_string(static_cast<long>(msBetween(loadStart, loadedTimed[i].sent))) +
                       ": " + fmtMs(loadedTimed[i].ms) + ";";
        slowest += "\n";
        stopSlow = true;
        slowSender.join();
        watcher.stop();

        // The timeouts: each connection closed without data, at the right time.
        std::string bad;
        double slowMin = 1e9, slowMax = 0, idleMin = 1e9, idleMax = 0;
        size_t slowBad = 0, idleBad = 0;
        for (int i = 0; i < kSlow; ++i) {
            const auto& e = watcher.entry(kIdle + i);
            if (!watcher.closed(kIdle + i) || !e.data.empty()) {
                if (slowBad++ < 3)
                    bad += "  slow #" + std::to_string(i) + ": " +
                           (watcher.closed(kIdle + i) ? "closed" : "still open") + ", data '" +
                           e.data + "'\n";
                continue;
            }
            double ms = msBetween(slowFirst[i], e.closedAt);
            slowMin = std::min(slowMin, ms);
            slowMax = std::max(slowMax, ms);
        }
        for (int i = 0; i < kIdle; ++i) {
            const auto& e = watcher.entry(i);
            if (!watcher.closed(i) || !e.data.empty()) {
                if (idleBad++ < 3)
                    bad += "  idle #" + std::to_string(i) + ": " +
                           (watcher.closed(i) ? "closed" : "still open") + ", data '" + e.data + "'\n";
                continue;
            }
            // Armed between our request and our reading of the answer.
            idleMin = std::min(idleMin, msBetween(idleSent[i], e.closedAt));
            idleMax = std::max(idleMax, msBetween(idleAnswered[i], e.closedAt));
        }
        double p99Base = quantile(base, 0.99), p99Load = quantile(loaded, 0.99);
        std::string summary =
            "[TestHostile] slow/idle: normal client " + std::to_string(base.size()) +
            " requests alone (p50 " + fmtMs(quantile(base, 0.5)) + ", p99 " + fmtMs(p99Base) +
            ", max " + fmtMs(quantile(base, 1.0)) + "), " + std::to_string(loaded.size()) +
            " under load over " + std::to_string(loadMs) + " ms (p50 " +
            fmtMs(quantile(loaded, 0.5)) + ", p99 " + fmtMs(p99Load) + ", max " +
            fmtMs(quantile(loaded, 1.0)) + "); slow clients closed after " + fmtMs(slowMin) +
            " .. " + fmtMs(slowMax) + ", idle after " + fmtMs(idleMin) + " .. " + fmtMs(idleMax) +
            "\n";
        std::fprintf(stderr, "%s%s", summary.c_str(), slowest.c_str());
        std::string what = summary + slowest + bad;
        CPPUNIT_ASSERT_MESSAGE(what + d_->logTail(), allClosed);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), slowBad);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), idleBad);
        CPPUNIT_ASSERT_MESSAGE("normal client: " + normal.firstFailure(), normal.failed() == 0);
        CPPUNIT_ASSERT_MESSAGE(what, loaded.size() >= 200);
        CPPUNIT_ASSERT_MESSAGE(what + "normal client p99 under load exceeds its p99 alone by more than 10 ms",
                               p99Load <= p99Base + 10.0);
        // request_timeout = 2: ~2 s after the first byte; keepalive_timeout = 3: ~3 s after the
        // answer.
        CPPUNIT_ASSERT_MESSAGE(what, slowMin >= 1800 && slowMax <= 3500);
        CPPUNIT_ASSERT_MESSAGE(what, idleMin >= 2800 && idleMax <= 4500);
        const std::string log = d_->log().substr(logFrom);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(d_->logTail(), size_t(kSlow), itest::countOf(log, "request timed out"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), itest::countOf(log, "keepalive timeout") >= size_t(kIdle));
        CPPUNIT_ASSERT(d_->running());
        CPPUNIT_ASSERT_EQUAL(size_t(2), d_->workers().size());
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(d_->log(), " died"));
    }

    // D. Descriptor exhaustion: the daemon runs under RLIMIT_NOFILE 64 (a wrapper script sets
    //    it before exec); 400 connections are more than its two workers can hold. The
    //    exhaustion is logged, at most once per worker (rate-limited); the daemon neither
    //    crashes nor spins; connections it holds keep being served; once the extra
    //    connections are closed, new ones are served again.
    void testFdExhaustion() {
        const int kExtra = 400;
        itest::raiseFdLimit(kExtra + 200);
        std::string wrapper = d_->path("mtpolicyd-ulimit.sh");
        itest::writeFile(wrapper, "#!/bin/sh\nulimit -n 64 || exit 99\nexec '" +
                                      itest::mtpolicydBin() + "' \"$@\"\n");
        CPPUNIT_ASSERT_EQUAL(0, ::chmod(wrapper.c_str(), 0755));
        {
            EnvOverride bin("MTPOLICYD_BIN", wrapper);
            start(globals(3) + R"(
port = [ "127.0.0.1:@PORT1@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
max_requests = 0; request_timeout = 5; keepalive_timeout = 60;
)" + kSimpleVhost);
        }
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitWorkers(2, 3000));
        const pid_t master = d_->pid();
        const std::vector<pid_t> workers0 = d_->workers();
        for (pid_t p : d_->allProcesses())
            CPPUNIT_ASSERT_EQUAL_MESSAGE("RLIMIT_NOFILE of " + std::to_string(p), 64L, softFdLimit(p));

        Conn held = mustConnect();
        std::string reply;
        CPPUNIT_ASSERT_EQUAL(Conn::Status::Ok, held.request(kSpecialReq, reply));

        size_t logFrom = d_->logSize();
        auto floodStart = Clock::now();
        std::vector<Conn> extra(kExtra);
        for (int i = 0; i < kExtra; ++i)
            CPPUNIT_ASSERT_MESSAGE("connect #" + std::to_string(i) + ": " +
                                       std::strerror(extra[i].lastErrno()),
                                   extra[i].connectTcp(d_->port(1)));
        for (auto& c : extra) c.send(kPlainReq);
        size_t answered = 0;
        auto readDeadline = Clock::now() + std::chrono::milliseconds(2000);
        for (auto& c : extra) {
            int left = static_cast<int>(std::max<long>(
                0, std::chrono::duration_cast<std::chrono::milliseconds>(readDeadline - Clock::now())
                       .count()));
            if (c.readReply(reply, left) == Conn::Status::Ok && reply == kPlainReply) ++answered;
        }
        const std::string accept = "cannot accept on 127.0.0.1:" + std::to_string(d_->port(1));
        CPPUNIT_ASSERT_MESSAGE("no '" + accept + "' in the log\n" + d_->logTail(),
                               d_->waitLog(accept, 2000, logFrom));
        CPPUNIT_ASSERT_MESSAGE("the error does not name the cause\n" + d_->logTail(),
                               d_->waitLog("Too many open files", 100, logFrom));
        CPPUNIT_ASSERT_MESSAGE("all " + std::to_string(kExtra) + " answered under RLIMIT_NOFILE 64?",
                               answered < size_t(kExtra));
        CPPUNIT_ASSERT_MESSAGE("answered only " + std::to_string(answered), answered >= 40);

        // No spinning: over 3 s of exhaustion, the daemon's processes use little CPU.
        long hz = sysconf(_SC_CLK_TCK);
        auto ticks = [&] {
            long t = 0;
            for (pid_t p : d_->allProcesses()) t += std::max(0L, cpuTicks(p));
            return t;
        };
        long t0 = ticks();
        auto c0 = Clock::now();
        sleepMs(3000);
        long used = ticks() - t0;
        double windowS = msBetween(c0, Clock::now()) / 1000.0;
        double cpuPct = 100.0 * static_cast<double>(used) / static_cast<double>(hz) / windowS;
        // A connection the daemon already holds is still served.
        CPPUNIT_ASSERT_EQUAL(Conn::Status::Ok, held.request(kSpecialReq, reply));
        CPPUNIT_ASSERT_EQUAL(kSpecialReply, reply);
        const std::string during = d_->log().substr(logFrom);
        size_t warnings = itest::countOf(during, accept);
        long floodMs = itest::elapsedMs(floodStart);

        // The extra connections go; new connections are served again.
        for (auto& c : extra) c.close();
        auto closedAt = Clock::now();
        bool back = itest::waitFor(
            [&] {
                Conn c = d_->connect();
                std::string r;
                return c.isOpen() && c.request(kSpecialReq, r, 500) == Conn::Status::Ok &&
                       r == kSpecialReply;
            },
            5000, 50);
        long backMs = itest::elapsedMs(closedAt);
        std::fprintf(stderr,
                     "[TestHostile] fd exhaustion: %zu of %d extra connections answered under "
                     "RLIMIT_NOFILE 64; %zu '%s' lines in %ld ms; CPU %.1f%% (%ld ticks in %.1f s); "
                     "served again %ld ms after the extra connections closed\n",
                     answered, kExtra, warnings, accept.c_str(), floodMs, cpuPct, used, windowS,
                     backMs);
        CPPUNIT_ASSERT_MESSAGE("not served again within 5 s\n" + d_->logTail(), back);
        for (int i = 0; i < 20; ++i) {
            Conn c = mustConnect();
            CPPUNIT_ASSERT_EQUAL(Conn::Status::Ok, c.request(kPlainReq, reply));
            CPPUNIT_ASSERT_EQUAL(kPlainReply, reply);
        }
        CPPUNIT_ASSERT_MESSAGE("logged " + std::to_string(warnings) + " times in " +
                                   std::to_string(floodMs) + " ms (rate limit: once per worker "
                                   "per 10 s)\n" + during.substr(0, 3000),
                               warnings >= 1 && warnings <= workers0.size());
        CPPUNIT_ASSERT_MESSAGE("CPU " + std::to_string(cpuPct) + "% while out of descriptors",
                               cpuPct < 10.0);
        CPPUNIT_ASSERT(d_->running());
        CPPUNIT_ASSERT_EQUAL(master, d_->pid());
        CPPUNIT_ASSERT_EQUAL_MESSAGE(d_->logTail(), pidList(workers0), pidList(d_->workers()));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(d_->log(), " died"));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), !contains(d_->log(), "internal error"));
    }

    // E. Started as root with user = "nobody", group = "nogroup": no process of the daemon,
    //    the master included (mtpolicyd(8): it drops privileges before starting workers and
    //    reloads as user), has a root uid or gid, after start and after a reload; the pid
    //    file is not writable by others, the unix socket is owned by user/group with mode
    //    0666, the log file is not readable by others; the SQL password never appears in the
    //    log (debug level, database down) nor in --dump-config / -t output.
    void testPrivileges() {
        if (geteuid() != 0) {
            std::fprintf(stderr, "[TestHostile] testPrivileges SKIPPED: not running as root\n");
            return;
        }
        passwd* pw = getpwnam("nobody");
        group* gr = getgrnam("nogroup");
        if (!pw || !gr) {
            std::fprintf(stderr,
                         "[TestHostile] testPrivileges SKIPPED: no user 'nobody' or group 'nogroup'\n");
            return;
        }
        const long uid = pw->pw_uid, gid = gr->gr_gid;
        // As mtpolicyd(8) asks: the directory of the pid file and the sockets belongs to user.
        CPPUNIT_ASSERT_EQUAL(0, ::chown(d_->dir().c_str(), static_cast<uid_t>(uid),
                                        static_cast<gid_t>(gid)));
        const std::string secret = "s3cr3t-pw";
        const std::string conf = d_->writeConfig(globals(4) + R"(
user = "nobody"; group = "nogroup";
port = [ "127.0.0.1:@PORT1@", "127.0.0.1:@PORT2@", "@SOCK@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 2;
request_timeout = 5;
connections = {
  db = { module = "Sql"; dsn = "dbi:mysql:database=mtpolicyd;mysql_socket=@DIR@/no-such-mysql.sock";
         user = "mtpolicyd"; password = ")" + secret + R"("; connect_timeout = 2; };
};
virtual_hosts = (
  { name = "main"; port = "@PORT1@"; plugins = ( { name = "a"; module = "Action"; action = "dunno"; } ); },
  { name = "acct"; port = "@PORT2@";
    plugins = ( { name = "AcctIP"; module = "Accounting"; fields = "client_address"; } ); },
  { name = "sock"; port = "@SOCK@"; plugins = ( { name = "s"; module = "Action"; action = "reject via socket"; } ); }
);
)");
        std::string err = d_->start(conf);
        CPPUNIT_ASSERT_MESSAGE(err, err.empty());
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitWorkers(2, 3000));

        auto checkIds = [&](const std::string& when) {
            std::vector<pid_t> procs = d_->allProcesses();
            CPPUNIT_ASSERT_MESSAGE(when + ": processes " + pidList(procs), procs.size() >= 3);
            for (pid_t p : procs) {
                std::string who = when + ": process " + std::to_string(p) +
                                  (p == d_->pid() ? " (master)" : " (worker)");
                std::vector<long> u = statusIds(p, "Uid:"), g = statusIds(p, "Gid:"),
                                  groups = statusIds(p, "Groups:");
                CPPUNIT_ASSERT_EQUAL_MESSAGE(who + " Uid fields", size_t(4), u.size());
                CPPUNIT_ASSERT_EQUAL_MESSAGE(who + " Gid fields", size_t(4), g.size());
                for (size_t i = 0; i < 4; ++i) {
                    CPPUNIT_ASSERT_EQUAL_MESSAGE(who + " uid (real/effective/saved/fs)", uid, u[i]);
                    CPPUNIT_ASSERT_EQUAL_MESSAGE(who + " gid (real/effective/saved/fs)", gid, g[i]);
                }
                for (long x : groups)
                    CPPUNIT_ASSERT_MESSAGE(who + " supplementary group " + std::to_string(x), x == gid);
            }
        };
        checkIds("after start");

        // Pid file: the master's pid, a regular file nobody else can write.
        struct stat st;
        CPPUNIT_ASSERT_EQUAL(0, ::stat(d_->pidPath().c_str(), &st));
        CPPUNIT_ASSERT(S_ISREG(st.st_mode));
        CPPUNIT_ASSERT_MESSAGE("pid file mode " + std::to_string(st.st_mode & 07777),
                               (st.st_mode & 0022) == 0);
        CPPUNIT_ASSERT_MESSAGE("pid file owner " + std::to_string(st.st_uid),
                               st.st_uid == 0 || static_cast<long>(st.st_uid) == uid);
        CPPUNIT_ASSERT_EQUAL(std::to_string(d_->pid()) + "\n", itest::readFile(d_->pidPath()));
        // Unix socket: owned by user and group, mode 0666 (mtpolicyd.conf(5)).
        CPPUNIT_ASSERT_EQUAL(0, ::lstat(d_->sock().c_str(), &st));
        CPPUNIT_ASSERT(S_ISSOCK(st.st_mode));
        CPPUNIT_ASSERT_EQUAL(uid, static_cast<long>(st.st_uid));
        CPPUNIT_ASSERT_EQUAL(gid, static_cast<long>(st.st_gid));
        CPPUNIT_ASSERT_EQUAL(0666, static_cast<int>(st.st_mode & 07777));
        // Log file (it holds request data at level 4): mode 0640, not readable by others.
        CPPUNIT_ASSERT_EQUAL(0, ::stat(d_->logPath().c_str(), &st));
        CPPUNIT_ASSERT_MESSAGE("log file mode " + std::to_string(st.st_mode & 07777),
                               (st.st_mode & 0027) == 0);
        {
            Conn s = d_->connectUnix();
            CPPUNIT_ASSERT(s.isOpen());
            std::string reply;
            CPPUNIT_ASSERT_EQUAL(Conn::Status::Ok, s.request(itest::makeRequest(), reply));
            CPPUNIT_ASSERT_EQUAL(std::string("reject via socket"), itest::actionOf(reply));
        }

        // The database is down: requests that need it are closed unanswered, and logged.
        for (int i = 0; i < 3; ++i) {
            Conn c = mustConnect(d_->port(2));
            std::string reply;
            Conn::Status s = c.request(
                itest::makeRequest({{"client_address", "192.0.2.1"},
                                    {"instance", "down." + std::to_string(i)}}),
                reply, 8000);
            CPPUNIT_ASSERT_MESSAGE(describe(s, reply), s == Conn::Status::Closed && reply.empty());
        }
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitLog("database 'db'", 2000));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitLog("error while processing request", 2000));

        // A reload, read and run as nobody: new workers, still no root anywhere.
        std::vector<pid_t> oldWorkers = d_->workers();
        size_t logFrom = d_->logSize();
        CPPUNIT_ASSERT(d_->signal(SIGHUP));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->waitLog("configuration reloaded", 3000, logFrom));
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), itest::waitFor([&] {
                                   for (pid_t p : oldWorkers)
                                       if (itest::processAlive(p)) return false;
                                   return d_->workers().size() == 2;
                               }, 8000));
        checkIds("after SIGHUP");
        {
            Conn c = mustConnect(d_->port(2));
            std::string reply;
            Conn::Status s = c.request(
                itest::makeRequest({{"client_address", "192.0.2.2"}, {"instance", "down.after"}}),
                reply, 8000);
            CPPUNIT_ASSERT_MESSAGE(describe(s, reply), s == Conn::Status::Closed);
        }

        // The password appears nowhere.
        const std::string log = d_->log();
        CPPUNIT_ASSERT_MESSAGE("password in the log:\n" + d_->logTail(), !contains(log, secret));
        CPPUNIT_ASSERT(!contains(itest::readFile(d_->path("daemon.stderr")), secret));
        CPPUNIT_ASSERT(!contains(itest::readFile(d_->path("daemon.stdout")), secret));
        const std::string bin = itest::mtpolicydBin();
        auto dump = itest::runCommand({bin, "--dump-config", "-c", conf}, "", 5000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + dump.err, 0, dump.exitCode);
        CPPUNIT_ASSERT_MESSAGE("password in --dump-config:\n" + dump.out,
                               !contains(dump.out + dump.err, secret));
        CPPUNIT_ASSERT_MESSAGE(dump.out, contains(dump.out, "password = \"********\""));
        auto test = itest::runCommand({bin, "-t", "-c", conf}, "", 5000);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("stderr: " + test.err, 0, test.exitCode);
        CPPUNIT_ASSERT(!contains(test.out + test.err, secret));

        std::string dbLine;
        {
            size_t at = log.find("database 'db'");
            size_t bol = log.rfind('\n', at);
            dbLine = log.substr(bol + 1, log.find('\n', at) - bol - 1);
        }
        std::fprintf(stderr,
                     "[TestHostile] privileges: master and workers run as uid %ld gid %ld after "
                     "start and after SIGHUP; database error logged without the password: %s\n",
                     uid, gid, dbLine.c_str());

        // The master, running as nobody, removes its pid file and socket when it stops.
        CPPUNIT_ASSERT_MESSAGE(d_->logTail(), d_->stop(5000));
        CPPUNIT_ASSERT_MESSAGE("pid file left\n" + d_->logTail(), !itest::fileExists(d_->pidPath()));
        CPPUNIT_ASSERT_MESSAGE("socket left\n" + d_->logTail(), !itest::fileExists(d_->sock()));
        CPPUNIT_ASSERT(!contains(d_->log(), secret));
    }

  private:
    std::unique_ptr<Daemon> d_;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestHostile);
