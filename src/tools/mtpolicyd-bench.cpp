// mtpolicyd-bench: a load generator for Postfix policy servers such as mtpolicyd.
// It opens N connections (one thread each) to a policy server on a loopback address or a
// unix socket and sends realistic END-OF-MESSAGE requests (the full Postfix attribute set,
// about 750 bytes, a unique instance per message, varied deterministically by --seed),
// either over kept-alive connections or one new connection per request, for a bounded
// time (-d) or number of requests (-n). It prints requests/s, latency percentiles
// (send -> full reply), the count of each action, errors and its own CPU time, so that a
// reader can see whether the tool itself was the bottleneck. With --ceiling-protocol it
// first starts the cheapest possible responder in-process (one epoll thread answering
// "action=dunno") and measures against that: the ceiling the protocol allows on this host.
// With --ceiling-sql it sends no policy requests at all but runs, per generated message, the
// SQL statements of the accounting how-to chain (SqlUserConfig, Quota, and Accounting's
// transaction: instance record and guarded counter upsert, on MariaDB as one prepared compound
// statement) straight through the MariaDB/MySQL client library: the ceiling the database allows.
// --merge-selects sends its two SELECTs as one compound statement too, so that anyone can
// re-measure whether saving that round trip pays (when it was added it showed no clear gain:
// what mysqld spends on the compound block eats what the saved round trip spares).
// --machine-costs sends nothing and needs no server: it measures what a system call and one
// blocking round trip (send, sleep, be woken by the answer) cost on this machine, the floor
// under the CPU time of a daemon that waits for several database round trips per request.
// --idle N holds N extra, silent connections open during the load (each answered once
// before it starts), and --daemon-pid samples the memory of the server's process tree.

#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <condition_variable>
#include <dirent.h>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <mysql.h>
#include <pwd.h>

#include "mtpolicyd/util/Fd.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1"
#endif

namespace {

constexpr const char* kProgName = "mtpolicyd-bench";

constexpr int kExitOk = 0;
constexpr int kExitErrors = 1;
constexpr int kExitUsage = 64;

// Receive/send slices: a blocked thread notices Ctrl-C or the end of the run within this.
constexpr int kSliceMillis = 200;

using Clock = std::chrono::steady_clock;

std::atomic<bool> gStop{false};

extern "C" void onSignal(int) { gStop.store(true, std::memory_order_relaxed); }

using mtp::Fd;

// Where to connect: a TCP address (loopback only) or a unix socket.
struct Target {
    sockaddr_storage addr{};
    socklen_t addrLen = 0;
    std::string label;
};

struct Options {
    std::string host = "127.0.0.1:12345";
    std::string socketPath;
    int connections = 8;
    bool keepalive = true;
    double durationSeconds = 0;
    uint64_t requests = 0;
    int clients = 100;
    uint64_t seed = 1;
    bool json = false;
    bool ceilingProtocol = false;
    double timeoutSeconds = 10;
    long daemonPid = 0;
    bool listClients = false;
    int idle = 0;
    // --ceiling-sql
    bool ceilingSql = false;
    std::string mysqlSocket;
    std::string mysqlHost;
    std::string mysqlDb = "mtpolicyd";
    std::string mysqlUser;
    std::string mysqlPassword;
    bool mergeSelects = false;
    // --machine-costs
    bool machineCosts = false;
};

void printUsage(std::ostream& out) {
    out << "Usage: " << kProgName << " [options]\n"
        << "\n"
        << "Sends realistic Postfix END-OF-MESSAGE policy requests to a policy server on a\n"
        << "loopback address or unix socket and reports throughput, latency and CPU time.\n"
        << "\n"
        << "Options:\n"
        << "  -H, --host HOST:PORT       server address (default 127.0.0.1:12345); only\n"
        << "                             127.0.0.0/8, ::1 ([::1]:PORT) or localhost\n"
        << "  -s, --socket PATH          connect to the unix socket PATH instead\n"
        << "  -c, --connections N        concurrent connections, one thread each (default 8)\n"
        << "      --keepalive            send many requests per connection (default)\n"
        << "      --new-connection       open a new connection for every request\n"
        << "  -d, --duration SECONDS     run for this long (default 10 unless -n is given)\n"
        << "  -n, --requests TOTAL       send this many requests in total (with -d: whichever\n"
        << "                             ends first)\n"
        << "      --clients K            distinct client addresses (default 100), taken from\n"
        << "                             192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24\n"
        << "      --seed N               seed of the request variation (default 1)\n"
        << "  -t, --timeout SECONDS      connect and reply timeout (default 10)\n"
        << "      --daemon-pid PID       also report the CPU time of PID and its descendant\n"
        << "                             processes (from /proc) per request, and their\n"
        << "                             memory (VmRSS, sampled every 500 ms during the load)\n"
        << "      --idle N               before the load, open N more connections (0..100000),\n"
        << "                             send one request on each and read its reply, then\n"
        << "                             keep them open and silent during the load; report\n"
        << "                             how many the server still holds open at the end\n"
        << "      --list-clients         print the --clients K client addresses, one a line,\n"
        << "                             and exit\n"
        << "      --ceiling-protocol     measure against an in-process minimal responder\n"
        << "                             (epoll, answers action=dunno) instead of a server\n"
        << "      --ceiling-sql          no policy server: per generated message run the SQL\n"
        << "                             statements of the accounting how-to chain (relay\n"
        << "                             policy SELECT, quota SELECT, then in a transaction\n"
        << "                             the instance INSERT IGNORE on acct_instances and the\n"
        << "                             upsert on acct_client_address; MariaDB + InnoDB: one\n"
        << "                             compound statement) as prepared statements, one\n"
        << "                             database connection per -c; the tables must exist\n"
        << "      --mysql-socket PATH    --ceiling-sql: the server's unix socket\n"
        << "      --mysql-host HOST:PORT --ceiling-sql: TCP address instead (loopback only);\n"
        << "                             neither: the client library's default socket\n"
        << "      --mysql-db NAME        --ceiling-sql: database (default mtpolicyd)\n"
        << "      --mysql-user NAME      --ceiling-sql: user (default: the current user)\n"
        << "      --mysql-password PW    --ceiling-sql: password (default: $MYSQL_PWD, or none)\n"
        << "      --merge-selects        --ceiling-sql: send the two SELECTs as one compound\n"
        << "                             statement returning two result sets (MariaDB 10.1.1\n"
        << "                             or later), one round trip less per message\n"
        << "      --machine-costs        no server, no requests: measure the CPU time of a\n"
        << "                             system call and of a blocking round trip over a unix\n"
        << "                             socket pair (send, sleep, be woken by the answer)\n"
        << "                             between two processes and between two threads, and\n"
        << "                             with libmariadb's non-blocking recv+poll+recv; takes\n"
        << "                             a few seconds\n"
        << "      --json                 print one JSON object line instead of the text\n"
        << "  -h, --help                 show this help and exit\n"
        << "  -V, --version              show the version and exit\n"
        << "\n"
        << "Exit status: 0 without errors, 1 when requests failed (or the database could not\n"
        << "be used, or a --machine-costs measurement failed), 64 on usage errors.\n";
}

[[noreturn]] void usageError(const std::string& message) {
    std::cerr << kProgName << ": " << message << "\n"
              << "Try '" << kProgName << " --help' for more information.\n";
    std::exit(kExitUsage);
}

bool parseUnsigned(const char* text, uint64_t& value) {
    if (!text || !*text || *text == '-') return false;
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    value = v;
    return true;
}

bool parsePositiveDouble(const char* text, double& value) {
    if (!text || !*text) return false;
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(text, &end);
    if (errno != 0 || *end != '\0' || !(v > 0) || v > 1e7) return false;
    value = v;
    return true;
}

// Resolves --host (or --mysql-host) into a loopback socket address; refuses anything else (exit 64).
Target resolveHost(const std::string& spec, const std::string& optionName = "--host") {
    std::string host;
    std::string port;
    if (!spec.empty() && spec[0] == '[') {
        auto close = spec.find(']');
        if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':')
            usageError(optionName + ": expected [ADDR]:PORT, got '" + spec + "'");
        host = spec.substr(1, close - 1);
        port = spec.substr(close + 2);
    } else {
        auto colon = spec.rfind(':');
        if (colon == std::string::npos) usageError(optionName + ": expected HOST:PORT, got '" + spec + "'");
        host = spec.substr(0, colon);
        port = spec.substr(colon + 1);
        if (host.find(':') != std::string::npos)
            usageError(optionName + ": write IPv6 addresses as [ADDR]:PORT, got '" + spec + "'");
    }
    uint64_t portNumber = 0;
    if (!parseUnsigned(port.c_str(), portNumber) || portNumber == 0 || portNumber > 65535)
        usageError(optionName + ": bad port '" + port + "'");

    Target target;
    in_addr v4{};
    in6_addr v6{};
    if (host == "localhost") host = "127.0.0.1";
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
        if ((ntohl(v4.s_addr) >> 24) != 127)
            usageError("refusing " + optionName + " " + spec +
                       ": only loopback addresses (127.0.0.0/8, ::1, localhost) may be loaded, "
                       "a benchmark must not hit a server on the network");
        auto* sin = reinterpret_cast<sockaddr_in*>(&target.addr);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(static_cast<uint16_t>(portNumber));
        sin->sin_addr = v4;
        target.addrLen = sizeof(sockaddr_in);
        target.label = host + ":" + port;
    } else if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&v6))
            usageError("refusing " + optionName + " " + spec +
                       ": only loopback addresses (127.0.0.0/8, ::1, localhost) may be loaded, "
                       "a benchmark must not hit a server on the network");
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&target.addr);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(static_cast<uint16_t>(portNumber));
        sin6->sin6_addr = v6;
        target.addrLen = sizeof(sockaddr_in6);
        target.label = "[" + host + "]:" + port;
    } else {
        usageError("refusing " + optionName + " " + spec +
                   ": not a loopback address (only 127.0.0.0/8, ::1 or localhost; host names "
                   "are not resolved)");
    }
    return target;
}

Target unixTarget(const std::string& path) {
    Target target;
    auto* sun = reinterpret_cast<sockaddr_un*>(&target.addr);
    if (path.empty() || path.size() >= sizeof(sun->sun_path))
        usageError("--socket: path empty or too long");
    sun->sun_family = AF_UNIX;
    std::memcpy(sun->sun_path, path.c_str(), path.size() + 1);
    target.addrLen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    target.label = "unix:" + path;
    return target;
}

timeval toTimeval(int millis) {
    timeval tv{};
    tv.tv_sec = millis / 1000;
    tv.tv_usec = (millis % 1000) * 1000;
    return tv;
}

// Connects with a timeout (non-blocking connect + poll), then switches to blocking I/O with
// short send/receive timeouts so that the caller can check for Ctrl-C between slices.
Fd connectTo(const Target& target, int timeoutMillis) {
    int family = reinterpret_cast<const sockaddr*>(&target.addr)->sa_family;
    Fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) return Fd();
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&target.addr), target.addrLen) != 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) return Fd();
        auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMillis);
        for (;;) {
            pollfd pfd{fd.get(), POLLOUT, 0};
            int rc = ::poll(&pfd, 1, kSliceMillis);
            if (rc > 0) break;
            if (rc < 0 && errno != EINTR) return Fd();
            if (gStop.load(std::memory_order_relaxed) || Clock::now() >= deadline) return Fd();
        }
        int soError = 0;
        socklen_t len = sizeof(soError);
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soError, &len) != 0 || soError != 0)
            return Fd();
    }
    int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    if (family != AF_UNIX) {
        int one = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    timeval tv = toTimeval(kSliceMillis);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

// --- request generation ---------------------------------------------------------------------

uint64_t splitMix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::string clientAddress(int index) {
    static const char* const kPrefixes[] = {"192.0.2.", "198.51.100.", "203.0.113."};
    return std::string(kPrefixes[index % 3]) + std::to_string(index / 3 % 254 + 1);
}

std::string hexFingerprint(uint64_t seed) {
    static const char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(95);
    for (int i = 0; i < 32; ++i) {
        if (i % 8 == 0) seed = splitMix(seed + static_cast<uint64_t>(i));
        unsigned byte = static_cast<unsigned>(seed >> ((i % 8) * 8)) & 0xff;
        if (i) out += ':';
        out += kHex[byte >> 4];
        out += kHex[byte & 15];
    }
    return out;
}

// Builds END-OF-MESSAGE requests like Postfix's smtpd (attribute order of smtpd_check.c).
// Only mt19937_64's raw output is used (it is specified exactly), so a seed gives the same
// requests everywhere.
class RequestGenerator {
  public:
    RequestGenerator(uint64_t seed, unsigned threadIndex, int clients)
        : rng_(splitMix(seed) ^ splitMix(0x1000 + threadIndex)),
          threadIndex_(threadIndex),
          clients_(clients),
          // Instances are unique per run too (the daemon records counted instances): the
          // start time and the process id.
          epoch_(static_cast<uint64_t>(std::time(nullptr)) << 20 ^ static_cast<uint64_t>(::getpid())) {}

    // Draws the next message without building its request text: client address, recipient
    // count and size (read them with address(), recipients(), size()). It consumes the same
    // random numbers as next(), so --ceiling-sql sees the same messages as a server would.
    void nextMessage() {
        ++sequence_;
        r1_ = rng_();
        r2_ = rng_();
        client_ = static_cast<int>(r1_ % static_cast<uint64_t>(clients_));
        address_ = clientAddress(client_);
        recipients_ = 1;
        unsigned pick = static_cast<unsigned>(r2_ % 100);
        if (pick >= 95) recipients_ = 6 + static_cast<unsigned>((r2_ >> 8) % 45);
        else if (pick >= 70) recipients_ = 2 + static_cast<unsigned>((r2_ >> 8) % 4);
        size_ = 800 + (r2_ >> 16) % 60000;
        if ((r2_ >> 48) % 50 == 0) size_ = 100000 + (r2_ >> 20) % 10000000;
        char instance[64];
        std::snprintf(instance, sizeof(instance), "%x.%llx.%llx.0", threadIndex_ + 1,
                      static_cast<unsigned long long>(epoch_),
                      static_cast<unsigned long long>(sequence_));
        instance_ = instance;
    }

    const std::string& address() const { return address_; }
    unsigned recipients() const { return recipients_; }
    uint64_t size() const { return size_; }
    const std::string& instance() const { return instance_; }

    // Draws the next message and returns its request text.
    const std::string& next() {
        nextMessage();
        const uint64_t r1 = r1_;
        const uint64_t r2 = r2_;
        const int client = client_;
        const std::string& address = address_;
        const unsigned recipients = recipients_;
        const uint64_t size = size_;
        std::string clientName = "mail" + std::to_string(client) + ".relay.example.com";
        bool unknownName = (r1 >> 20) % 10 == 0;     // 10 %: no reverse DNS
        bool authenticated = (r1 >> 24) % 5 == 0;    // 20 %: SASL submission
        bool clientCert = (r1 >> 28) % 4 == 0;       // 25 %: TLS client certificate
        bool tls = (r1 >> 32) % 10 != 0;             // 90 %: TLS

        char queueId[16];
        std::snprintf(queueId, sizeof(queueId), "%011llX",
                      static_cast<unsigned long long>(splitMix(sequence_ * 131 + threadIndex_) &
                                                      0xFFFFFFFFFFFULL));
        const std::string& instance = instance_;
        std::string user = "user" + std::to_string((r1 >> 36) % 5000);
        std::string sender = user + "@sender-" + std::to_string(client % 17) + ".example.org";

        std::string& q = request_;
        q.clear();
        q += "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nprotocol_name=ESMTP\n";
        q += "helo_name=";
        q += unknownName ? "[" + address + "]" : clientName;
        q += "\nqueue_id=";
        q += queueId;
        q += "\nsender=";
        q += sender;
        q += "\nrecipient=";
        if (recipients == 1)
            q += "rcpt" + std::to_string((r2 >> 40) % 10000) + "@destination.example.net";
        q += "\nrecipient_count=";
        q += std::to_string(recipients);
        q += "\nclient_address=";
        q += address;
        q += "\nclient_name=";
        q += unknownName ? "unknown" : clientName;
        q += "\nreverse_client_name=";
        q += unknownName ? "unknown" : clientName;
        q += "\ninstance=";
        q += instance;
        q += "\nsasl_method=";
        if (authenticated) q += "PLAIN";
        q += "\nsasl_username=";
        if (authenticated) q += user;
        q += "\nsasl_sender=\nsize=";
        q += std::to_string(size);
        q += "\nccert_subject=";
        if (clientCert) q += clientName;
        q += "\nccert_issuer=";
        if (clientCert) q += "Example Relay CA R3";
        q += "\nccert_fingerprint=";
        if (clientCert) q += hexFingerprint(static_cast<uint64_t>(client) * 2 + 1);
        q += "\nccert_pubkey_fingerprint=";
        if (clientCert) q += hexFingerprint(static_cast<uint64_t>(client) * 2 + 2);
        q += "\nencryption_protocol=";
        if (tls) q += "TLSv1.3";
        q += "\nencryption_cipher=";
        if (tls) q += "TLS_AES_256_GCM_SHA384";
        q += "\nencryption_keysize=";
        if (tls) q += "256";
        q += "\netrn_domain=\nstress=\nclient_port=";
        q += std::to_string(1024 + (r1 >> 44) % 64000);
        q += "\npolicy_context=\nserver_address=198.51.100.25\nserver_port=";
        q += authenticated ? "587" : "25";
        q += "\ncompatibility_level=3.6\nmail_version=3.7.11\n\n";
        return q;
    }

  private:
    std::mt19937_64 rng_;
    unsigned threadIndex_;
    int clients_;
    uint64_t epoch_;
    uint64_t sequence_ = 0;
    uint64_t r1_ = 0, r2_ = 0;
    int client_ = 0;
    std::string address_;
    std::string instance_;
    unsigned recipients_ = 1;
    uint64_t size_ = 0;
    std::string request_;
};

// --- load -----------------------------------------------------------------------------------

struct WorkerStats {
    std::vector<uint32_t> latenciesMicros;
    std::unordered_map<std::string, uint64_t> actions;
    uint64_t requestBytes = 0;
    uint64_t closedWithoutReply = 0;
    uint64_t connectFailures = 0;
    uint64_t timeouts = 0;
    uint64_t badReplies = 0;
    // --ceiling-sql
    uint64_t sqlErrors = 0;
    uint64_t policyFound = 0;    // messages whose relay policy SELECT returned a row
    uint64_t policyMissing = 0;  // ... returned none
};

struct LoadPlan {
    const Target* target = nullptr;
    const Options* options = nullptr;
    Clock::time_point deadline = Clock::time_point::max();
    uint64_t total = 0;  // 0: unlimited
    std::atomic<uint64_t> claimed{0};
};

// CPU time (user + sys) of the calling thread, in seconds.
double threadCpuSeconds() {
    rusage usage{};
    if (::getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

bool shouldStop(const LoadPlan& plan, Clock::time_point now) {
    return gStop.load(std::memory_order_relaxed) || now >= plan.deadline;
}

enum class IoResult { Ok, Closed, Timeout, Stopped };

IoResult sendAll(int fd, const std::string& data, Clock::time_point replyDeadline) {
    size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (gStop.load(std::memory_order_relaxed)) return IoResult::Stopped;
            if (Clock::now() >= replyDeadline) return IoResult::Timeout;
            continue;
        }
        return IoResult::Closed;
    }
    return IoResult::Ok;
}

// Reads until the blank line that ends a reply; `reply` holds the reply without it.
IoResult readReply(int fd, std::string& buffer, Clock::time_point replyDeadline) {
    buffer.clear();
    char chunk[4096];
    for (;;) {
        ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
        if (n > 0) {
            size_t scanFrom = buffer.empty() ? 0 : buffer.size() - 1;
            buffer.append(chunk, static_cast<size_t>(n));
            auto end = buffer.find("\n\n", scanFrom);
            if (end != std::string::npos) {
                buffer.resize(end + 1);
                return IoResult::Ok;
            }
            continue;
        }
        if (n == 0) return IoResult::Closed;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (gStop.load(std::memory_order_relaxed)) return IoResult::Stopped;
            if (Clock::now() >= replyDeadline) return IoResult::Timeout;
            continue;
        }
        return IoResult::Closed;
    }
}

void recordAction(WorkerStats& stats, const std::string& reply) {
    size_t pos = 0;
    while (pos < reply.size()) {
        size_t eol = reply.find('\n', pos);
        if (eol == std::string::npos) eol = reply.size();
        if (reply.compare(pos, 7, "action=") == 0) {
            ++stats.actions[reply.substr(pos + 7, eol - pos - 7)];
            return;
        }
        pos = eol + 1;
    }
    ++stats.badReplies;
}

void runWorker(LoadPlan& plan, unsigned index, WorkerStats& stats) {
    const Options& options = *plan.options;
    const int timeoutMillis = static_cast<int>(options.timeoutSeconds * 1000);
    RequestGenerator generator(options.seed, index, options.clients);
    std::string reply;
    Fd conn;
    auto now = Clock::now();
    while (!shouldStop(plan, now)) {
        if (plan.total && plan.claimed.fetch_add(1, std::memory_order_relaxed) >= plan.total) break;
        if (!conn.valid()) {
            conn = connectTo(*plan.target, timeoutMillis);
            if (!conn.valid()) {
                if (gStop.load(std::memory_order_relaxed)) break;
                ++stats.connectFailures;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));  // don't spin
                now = Clock::now();
                continue;
            }
        }
        const std::string& request = generator.next();
        stats.requestBytes += request.size();
        auto start = Clock::now();
        auto replyDeadline = start + std::chrono::milliseconds(timeoutMillis);
        IoResult result = sendAll(conn.get(), request, replyDeadline);
        if (result == IoResult::Ok) result = readReply(conn.get(), reply, replyDeadline);
        now = Clock::now();
        if (result == IoResult::Ok) {
            auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now - start).count();
            stats.latenciesMicros.push_back(
                static_cast<uint32_t>(std::min<long long>(micros, UINT32_MAX)));
            recordAction(stats, reply);
            if (!options.keepalive) conn.reset();
            continue;
        }
        conn.reset();
        if (result == IoResult::Stopped) break;
        if (result == IoResult::Timeout) ++stats.timeouts;
        else ++stats.closedWithoutReply;
    }
}

// --- SQL ceiling (--ceiling-sql) --------------------------------------------------------------

// The statements of the accounting how-to chain, byte for byte as the daemon's plugins send
// them: SqlUserConfig with the how-to's sql_query, Quota (field client_address, metric count)
// and Accounting (fields client_address, plugin name AcctIP), which records the instance in
// acct_instances and counts only when that row is new, in one transaction: on MariaDB with
// both tables on InnoDB one prepared compound statement (one round trip), elsewhere START
// TRANSACTION, the instance INSERT IGNORE, the upsert and COMMIT (four).
constexpr const char* kSqlRelayPolicy =
    "SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id) "
    "WHERE h.client_address=?";
constexpr const char* kSqlQuota =
    "SELECT `count` FROM `acct_client_address` WHERE `key` = ? AND `time` = ?";
constexpr const char* kSqlInstance =
    "INSERT IGNORE INTO `acct_instances` (`plugin`, `instance`, `time`) VALUES (?, ?, ?)";
constexpr const char* kSqlAccounting =
    "INSERT INTO `acct_client_address` (`key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt`) "
    "VALUES (?, ?, 1, ?, ?, ?) ON DUPLICATE KEY UPDATE `count` = `count` + 1, "
    "`count_rcpt` = `count_rcpt` + VALUES(`count_rcpt`), `size` = `size` + VALUES(`size`), "
    "`size_rcpt` = `size_rcpt` + VALUES(`size_rcpt`)";
// MysqlConnection::executeTransaction's compound statement around Accounting's batch: the
// instance INSERT IGNORE, its ROW_COUNT() kept, and the upsert guarded by it.
const std::string kSqlCompound =
    std::string("BEGIN NOT ATOMIC DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; "
                "START TRANSACTION; ") +
    kSqlInstance + "\n; SET @mtp_counted = ROW_COUNT()\n; " +
    "INSERT INTO `acct_client_address` (`key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt`) "
    "SELECT ?, ?, 1, ?, ?, ? FROM DUAL WHERE @mtp_counted > 0 ON DUPLICATE KEY UPDATE `count` = `count` + 1, "
    "`count_rcpt` = `count_rcpt` + VALUES(`count_rcpt`), `size` = `size` + VALUES(`size`), "
    "`size_rcpt` = `size_rcpt` + VALUES(`size_rcpt`)\n; COMMIT; END";
// --merge-selects: both SELECTs in one compound statement, which returns their two result
// sets (parameters: the relay SELECT's address, then the quota SELECT's address and month).
const std::string kSqlSelects =
    std::string("BEGIN NOT ATOMIC ") + kSqlRelayPolicy + "\n; " + kSqlQuota + "\n; END";
// Prepared statements of a session, in the order they run: kStSelects or kStRelay and kStQuota,
// then kStCompound or kStInstance..kStAccounting.
enum SqlStmt { kStSelects, kStRelay, kStQuota, kStInstance, kStAccounting, kStCompound, kSqlStatements };
// Round trips per message of the last session opened: 1 (--merge-selects) or 2 for the
// SELECTs, plus 1 (compound) or 4 for the transaction.
std::atomic<int> gSqlRoundTrips{0};

// Where the database is: a loopback TCP address, a unix socket, or (both empty) the client
// library's default socket.
struct SqlTarget {
    std::string host;
    unsigned port = 0;
    std::string socket;
    std::string label;
};

// my_bool (MariaDB) or bool (MySQL 8), whichever MYSQL_BIND uses.
using BindBool = std::remove_pointer_t<decltype(MYSQL_BIND::is_null)>;

std::atomic<bool> gSqlErrorPrinted{false};

void reportSqlErrorOnce(const std::string& message) {
    if (!gSqlErrorPrinted.exchange(true))
        std::fprintf(stderr, "%s: sql error (only the first is shown): %s\n", kProgName, message.c_str());
}

// The month bucket of the Quota and Accounting plugins: time_pattern "%Y-%m", local time.
std::string currentMonth() {
    time_t now = std::time(nullptr);
    tm local{};
    ::localtime_r(&now, &local);
    char buf[32];
    size_t n = std::strftime(buf, sizeof(buf), "%Y-%m", &local);
    return std::string(buf, n);
}

// One database connection with the how-to's four statements prepared on it (like one daemon worker's
// handle): autocommit, utf8mb4, CLIENT_FOUND_ROWS, no library reconnect. Parameters are bound
// once to the buffers below; results are fetched as text, as the daemon does.
class SqlSession {
  public:
    SqlSession(const SqlTarget& target, const Options& options) : target_(target), options_(options) {}
    ~SqlSession() { close(); }
    SqlSession(const SqlSession&) = delete;
    SqlSession& operator=(const SqlSession&) = delete;

    bool open(std::string& error) {
        close();
        db_ = mysql_init(nullptr);
        if (!db_) {
            error = "mysql_init: out of memory";
            return false;
        }
        unsigned timeout = static_cast<unsigned>(options_.timeoutSeconds + 0.999);
        mysql_options(db_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
        mysql_options(db_, MYSQL_OPT_READ_TIMEOUT, &timeout);
        mysql_options(db_, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
        mysql_options(db_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
#ifdef MARIADB_PACKAGE_VERSION
        BindBool off = 0;
        mysql_options(db_, MYSQL_OPT_RECONNECT, &off);
#endif
        unsigned protocol = target_.host.empty() ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
        mysql_options(db_, MYSQL_OPT_PROTOCOL, &protocol);
        const char* host = target_.host.empty() ? "localhost" : target_.host.c_str();
        const char* socket = target_.socket.empty() ? nullptr : target_.socket.c_str();
        // The merged SELECTs return two result sets to a prepared statement (libmariadb asks
        // for that anyway; said explicitly for other client libraries).
        unsigned long flags = CLIENT_FOUND_ROWS;
        if (options_.mergeSelects) flags |= CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS;
        if (!mysql_real_connect(db_, host, options_.mysqlUser.c_str(), options_.mysqlPassword.c_str(),
                                options_.mysqlDb.c_str(), target_.port, socket, flags) ||
            mysql_autocommit(db_, 1) != 0) {
            error = "cannot connect to " + target_.label + " as " + options_.mysqlUser + ": " +
                    mysql_error(db_);
            close();
            return false;
        }
        // As Accounting: MariaDB 10.1.1 and later run the transaction as one statement when
        // both tables are InnoDB.
        const char* server = mysql_get_server_info(db_);
        const bool mariadbCompound =
            server && std::strstr(server, "MariaDB") && mysql_get_server_version(db_) >= 100101;
        if (options_.mergeSelects && !mariadbCompound) {
            error = std::string("--merge-selects needs MariaDB 10.1.1 or later (compound statements); ") +
                    target_.label + " runs " + (server ? server : "an unknown server");
            close();
            return false;
        }
        compound_ = mariadbCompound && bothInnodb();
        const std::string sql[kSqlStatements] = {kSqlSelects,    kSqlRelayPolicy, kSqlQuota,
                                                 kSqlInstance,   kSqlAccounting,  kSqlCompound};
        for (int i = 0; i < kSqlStatements; ++i) {
            if (options_.mergeSelects ? (i == kStRelay || i == kStQuota) : i == kStSelects) continue;
            if (compound_ ? (i == kStInstance || i == kStAccounting) : i == kStCompound) continue;
            stmt_[i] = mysql_stmt_init(db_);
            if (!stmt_[i]) {
                error = std::string("mysql_stmt_init: ") + mysql_error(db_);
                close();
                return false;
            }
            BindBool on = 1;
            mysql_stmt_attr_set(stmt_[i], STMT_ATTR_UPDATE_MAX_LENGTH, &on);
            if (mysql_stmt_prepare(stmt_[i], sql[i].data(), sql[i].size()) != 0) {
                error = "cannot prepare " + sql[i] + ": " + mysql_stmt_error(stmt_[i]);
                close();
                return false;
            }
        }
        bindText(bindRelay_[0], address_, addressLength_);
        bindText(bindQuota_[0], address_, addressLength_);
        bindText(bindQuota_[1], month_, monthLength_);
        // The merged SELECTs' parameters, in the order they appear: the relay SELECT's, the quota SELECT's.
        bindText(bindSelects_[0], address_, addressLength_);
        bindText(bindSelects_[1], address_, addressLength_);
        bindText(bindSelects_[2], month_, monthLength_);
        // The compound statement's parameters: the instance INSERT's, then the upsert's.
        bindText(bindTransaction_[0], plugin_, pluginLength_);
        bindText(bindTransaction_[1], instance_, instanceLength_);
        bindInteger(bindTransaction_[2], now_);
        bindText(bindTransaction_[3], address_, addressLength_);
        bindText(bindTransaction_[4], month_, monthLength_);
        bindInteger(bindTransaction_[5], recipients_);
        bindInteger(bindTransaction_[6], size_);
        bindInteger(bindTransaction_[7], sizeRecipients_);
        MYSQL_BIND* binds[kSqlStatements] = {bindSelects_,      bindRelay_,           bindQuota_,
                                             bindTransaction_, bindTransaction_ + 3, bindTransaction_};
        for (int i = 0; i < kSqlStatements; ++i) {
            if (!stmt_[i]) continue;
            if (mysql_stmt_bind_param(stmt_[i], binds[i]) != 0) {
                error = std::string("mysql_stmt_bind_param: ") + mysql_stmt_error(stmt_[i]);
                close();
                return false;
            }
        }
        gSqlRoundTrips = (options_.mergeSelects ? 1 : 2) + (compound_ ? 1 : 4);
        return true;
    }

    void close() {
        for (auto& st : stmt_) {
            if (st) mysql_stmt_close(st);
            st = nullptr;
        }
        if (db_) mysql_close(db_);
        db_ = nullptr;
    }

    bool isOpen() const { return db_ != nullptr; }

    // Runs the statements of one message (in one transaction from the instance on). On failure: false, `error` set, and
    // `lost` when the connection is gone (the caller reopens it).
    bool runMessage(const std::string& address, const std::string& instance, const std::string& month,
                    unsigned recipients, uint64_t size, bool& policyFound, std::string& error, bool& lost) {
        instanceLength_ = std::min(instance.size(), sizeof(instance_));
        std::memcpy(instance_, instance.data(), instanceLength_);
        now_ = static_cast<long long>(std::time(nullptr));
        addressLength_ = std::min(address.size(), sizeof(address_));
        std::memcpy(address_, address.data(), addressLength_);
        monthLength_ = std::min(month.size(), sizeof(month_));
        std::memcpy(month_, month.data(), monthLength_);
        recipients_ = static_cast<long long>(recipients);
        size_ = static_cast<long long>(size);
        sizeRecipients_ = size_ * recipients_;
        static const char* const kNames[kSqlStatements] = {"merged relay policy and quota SELECTs",
                                                          "relay policy SELECT", "quota SELECT",
                                                          "instance INSERT IGNORE",
                                                          "accounting INSERT ... ON DUPLICATE KEY UPDATE",
                                                          "accounting transaction"};
        for (int index = 0; index < kSqlStatements; ++index) {
            const SqlStmt i = static_cast<SqlStmt>(index);
            if (!stmt_[i]) continue;
            uint64_t rows = 0;
            if (i == kStInstance && !query("START TRANSACTION", error, lost)) return false;
            std::string unexpected;  // kStSelects: a reply of the wrong shape, not a server error
            if (i == kStSelects ? !executeSelects(stmt_[i], rows, unexpected) : !execute(stmt_[i], rows)) {
                unsigned code = mysql_stmt_errno(stmt_[i]);
                error = std::string(kNames[i]) + ": " +
                        (unexpected.empty() ? std::to_string(code) + " " + mysql_stmt_error(stmt_[i]) : unexpected);
                // CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED, ER_SERVER_SHUTDOWN,
                // ER_CONNECTION_KILLED, ER_UNKNOWN_STMT_HANDLER, ER_CLIENT_INTERACTION_TIMEOUT
                lost = code == 2006 || code == 2013 || code == 2055 || code == 1053 || code == 1927 ||
                       code == 1243 || code == 4031;
                std::string ignored;
                if (!lost && !compound_ && i >= kStInstance) query("ROLLBACK", ignored, lost);
                return false;
            }
            if (i == kStRelay || i == kStSelects) policyFound = rows > 0;  // the relay SELECT's rows
        }
        return compound_ || query("COMMIT", error, lost);
    }

  private:
    // Are acct_client_address and acct_instances both InnoDB tables?
    bool bothInnodb() {
        const char* sql =
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND "
            "table_name IN ('acct_client_address', 'acct_instances') AND ENGINE = 'InnoDB'";
        if (mysql_query(db_, sql) != 0) return false;
        MYSQL_RES* res = mysql_store_result(db_);
        if (!res) return false;
        MYSQL_ROW row = mysql_fetch_row(res);
        bool both = row && row[0] && std::strcmp(row[0], "2") == 0;
        mysql_free_result(res);
        return both;
    }

    template <size_t N>
    static void bindText(MYSQL_BIND& b, char (&buffer)[N], unsigned long& length) {
        std::memset(&b, 0, sizeof(b));
        b.buffer_type = MYSQL_TYPE_STRING;
        b.buffer = buffer;
        b.buffer_length = N;
        b.length = &length;
    }

    static void bindInteger(MYSQL_BIND& b, long long& value) {
        std::memset(&b, 0, sizeof(b));
        b.buffer_type = MYSQL_TYPE_LONGLONG;
        b.buffer = &value;
    }

    bool query(const char* sql, std::string& error, bool& lost) {
        if (mysql_query(db_, sql) == 0) return true;
        unsigned code = mysql_errno(db_);
        error = std::string(sql) + ": " + std::to_string(code) + " " + mysql_error(db_);
        lost = code == 2006 || code == 2013 || code == 2055 || code == 1053 || code == 1927;
        return false;
    }

    // Executes and, for a SELECT, stores and fetches every row (as text, like the daemon).
    bool execute(MYSQL_STMT* st, uint64_t& rows) {
        if (mysql_stmt_execute(st) != 0) return false;
        if (mysql_stmt_field_count(st) == 0) return true;
        return fetchResult(st, rows);
    }

    // --merge-selects: executes kStSelects and fetches both result sets the same way; `rows`
    // becomes the first's (the relay SELECT's) row count. The compound statement ends with a
    // status without columns. Every result is read, so that the connection stays usable even
    // after a failed fetch or a reply of an unexpected shape: then false with `unexpected` set
    // (a server or connection error leaves it empty: the statement's error tells).
    bool executeSelects(MYSQL_STMT* st, uint64_t& rows, std::string& unexpected) {
        if (mysql_stmt_execute(st) != 0) return false;
        int resultSets = 0;
        for (;;) {
            if (mysql_stmt_field_count(st) > 0) {
                uint64_t setRows = 0;
                // After mysql_stmt_next_result() the statement describes the next set's
                // columns: fetchResult() binds the result buffer again for them.
                if (!fetchResult(st, setRows) && unexpected.empty())
                    unexpected = "result set " + std::to_string(resultSets + 1) + ": " +
                                 std::to_string(mysql_stmt_errno(st)) + " " + mysql_stmt_error(st);
                if (resultSets == 0) rows = setRows;
                ++resultSets;
            }
            int next = mysql_stmt_next_result(st);
            if (next == -1) break;  // no more results
            if (next > 0) {
                unexpected.clear();
                return false;
            }
        }
        if (unexpected.empty() && resultSets != 2)
            unexpected = std::to_string(resultSets) + " result sets instead of 2";
        return unexpected.empty();
    }

    // Stores the current result set of `st`, binds its one column to the result buffer and
    // fetches every row (as text, like the daemon); frees the result.
    bool fetchResult(MYSQL_STMT* st, uint64_t& rows) {
        bool ok = mysql_stmt_store_result(st) == 0;
        if (ok) {
            MYSQL_BIND out;
            std::memset(&out, 0, sizeof(out));
            out.buffer_type = MYSQL_TYPE_STRING;
            out.buffer = column_;
            out.buffer_length = sizeof(column_);
            out.length = &columnLength_;
            out.is_null = &columnNull_;
            out.error = &columnError_;
            ok = mysql_stmt_bind_result(st, &out) == 0;
            while (ok) {
                int rc = mysql_stmt_fetch(st);
                if (rc == MYSQL_NO_DATA) break;
                if (rc == 1) ok = false;
                else ++rows;  // 0 or MYSQL_DATA_TRUNCATED (a value longer than the buffer)
            }
        }
        mysql_stmt_free_result(st);
        return ok;
    }

    const SqlTarget& target_;
    const Options& options_;
    MYSQL* db_ = nullptr;
    MYSQL_STMT* stmt_[kSqlStatements] = {};
    // Parameter buffers, bound once per connection. (The address and month are far shorter.)
    char address_[256] = {};
    unsigned long addressLength_ = 0;
    char month_[64] = {};
    unsigned long monthLength_ = 0;
    long long recipients_ = 0, size_ = 0, sizeRecipients_ = 0;
    char plugin_[8] = "AcctIP";
    unsigned long pluginLength_ = 6;
    char instance_[128] = {};
    unsigned long instanceLength_ = 0;
    long long now_ = 0;
    bool compound_ = false;  // MariaDB: kStCompound instead of kStInstance..kStAccounting
    MYSQL_BIND bindSelects_[3];
    MYSQL_BIND bindRelay_[1];
    MYSQL_BIND bindQuota_[2];
    MYSQL_BIND bindTransaction_[8];  // kStCompound's; kStInstance uses the first 3, kStAccounting the rest
    // Result buffer: one column (config, or count). A longer config is fetched truncated
    // (MYSQL_DATA_TRUNCATED) and still counts as a row: the values are not used.
    char column_[4096];
    unsigned long columnLength_ = 0;
    BindBool columnNull_ = 0;
    BindBool columnError_ = 0;
};

// One --ceiling-sql thread: its session was opened (and its statements prepared) before the
// clock started; per message it runs the how-to's statements, the latency covering all of them.
void runSqlWorker(LoadPlan& plan, unsigned index, WorkerStats& stats, SqlSession& session) {
    const Options& options = *plan.options;
    mysql_thread_init();
    RequestGenerator generator(options.seed, index, options.clients);
    std::string error;
    auto now = Clock::now();
    while (!shouldStop(plan, now)) {
        if (plan.total && plan.claimed.fetch_add(1, std::memory_order_relaxed) >= plan.total) break;
        if (!session.isOpen()) {
            if (!session.open(error)) {
                reportSqlErrorOnce(error);
                ++stats.connectFailures;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));  // don't spin
                now = Clock::now();
                continue;
            }
        }
        generator.nextMessage();
        std::string month = currentMonth();
        bool policyFound = false;
        bool lost = false;
        auto start = Clock::now();
        bool ok = session.runMessage(generator.address(), generator.instance(), month, generator.recipients(),
                                     generator.size(),
                                     policyFound, error, lost);
        now = Clock::now();
        if (!ok) {
            ++stats.sqlErrors;
            reportSqlErrorOnce(error);
            if (lost) session.close();
            continue;
        }
        auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now - start).count();
        stats.latenciesMicros.push_back(static_cast<uint32_t>(std::min<long long>(micros, UINT32_MAX)));
        if (policyFound) ++stats.policyFound;
        else ++stats.policyMissing;
    }
    session.close();
    mysql_thread_end();
}

// --- idle connections (--idle) ----------------------------------------------------------------

// How many idle connections may be connecting or waiting for their reply at once, so that the
// set-up does not flood the server's listen queue.
constexpr size_t kIdleInFlight = 200;
// The request generator stream of the idle connections (the load threads use 0..N-1).
constexpr unsigned kIdleGeneratorIndex = 0x100000;

struct IdleStats {
    int requested = 0;
    int established = 0;  // connected, request sent, reply read
    int openAtEnd = 0;    // of those: not closed by the server when the load ended
    double setupSeconds = 0;
    int connectFailures = 0;
    int closedWithoutReply = 0;
    int timeouts = 0;
    bool interrupted = false;
};

// Holds the idle connections. open() sets them up from the calling thread with one epoll
// instance and non-blocking sockets; afterwards they stay silent until countOpen().
class IdleSet {
  public:
    void open(const Target& target, const Options& options, IdleStats& stats) {
        stats.requested = options.idle;
        auto setupStart = Clock::now();
        Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll.valid()) throw std::runtime_error(std::string("epoll_create1: ") + strerror(errno));
        const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeoutSeconds * 1000));
        RequestGenerator generator(options.seed, kIdleGeneratorIndex, options.clients);
        std::vector<std::unique_ptr<Pending>> active;
        int started = 0;
        fds_.reserve(static_cast<size_t>(options.idle));
        std::vector<epoll_event> events(kIdleInFlight);
        for (;;) {
            if (gStop.load(std::memory_order_relaxed)) {
                stats.interrupted = true;
                break;
            }
            auto now = Clock::now();
            while (active.size() < kIdleInFlight && started < options.idle) {
                auto p = std::make_unique<Pending>();
                p->request = generator.next();
                p->deadline = now + timeout;
                ++started;
                startConnect(epoll.get(), target, *p, now);
                active.push_back(std::move(p));
            }
            if (active.empty()) break;

            bool backingOff = false;
            auto wake = now + std::chrono::milliseconds(kSliceMillis);
            for (auto& p : active) {
                if (p->state == State::Backoff) {
                    if (now >= p->retryAt) startConnect(epoll.get(), target, *p, now);
                    if (p->state == State::Backoff) backingOff = true;
                }
                if (p->state != State::Failed) wake = std::min(wake, p->deadline);
            }
            int waitMillis = backingOff ? 10 : static_cast<int>(std::max<int64_t>(
                                               0, std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1));
            int n = ::epoll_wait(epoll.get(), events.data(), static_cast<int>(events.size()), waitMillis);
            if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + strerror(errno));
            for (int i = 0; i < n; ++i) advance(epoll.get(), *static_cast<Pending*>(events[i].data.ptr));

            now = Clock::now();
            for (auto& p : active) {
                if (p->state != State::Done && p->state != State::Failed && now >= p->deadline) {
                    p->state = State::Failed;
                    p->failure = &IdleStats::timeouts;
                }
            }
            for (size_t i = 0; i < active.size();) {
                Pending& p = *active[i];
                if (p.state != State::Done && p.state != State::Failed) {
                    ++i;
                    continue;
                }
                if (p.fd.valid()) ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, p.fd.get(), nullptr);
                if (p.state == State::Done) fds_.push_back(std::move(p.fd));
                else ++(stats.*(p.failure));
                active[i] = std::move(active.back());
                active.pop_back();
            }
        }
        stats.established = static_cast<int>(fds_.size());
        stats.setupSeconds = std::chrono::duration<double>(Clock::now() - setupStart).count();
    }

    // How many of the established connections the server still holds open: a zero-timeout
    // poll for POLLIN|POLLRDHUP, and for a readable one a MSG_PEEK recv to tell EOF from data.
    int countOpen() const {
        std::vector<pollfd> pfds(fds_.size());
        for (size_t i = 0; i < fds_.size(); ++i) pfds[i] = pollfd{fds_[i].get(), POLLIN | POLLRDHUP, 0};
        if (!pfds.empty() && ::poll(pfds.data(), pfds.size(), 0) < 0) return -1;
        int open = 0;
        for (const auto& pfd : pfds) {
            if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) continue;
            if (pfd.revents & POLLIN) {
                char c;
                ssize_t r = ::recv(pfd.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
                if (r == 0) continue;                                        // EOF
                if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) continue;  // reset
            }
            ++open;
        }
        return open;
    }

    void closeAll() { fds_.clear(); }

  private:
    enum class State { Connecting, Sending, Reading, Backoff, Done, Failed };

    struct Pending {
        Fd fd;
        State state = State::Connecting;
        Clock::time_point deadline;
        Clock::time_point retryAt;
        std::string request;
        size_t sent = 0;
        std::string reply;
        int IdleStats::*failure = &IdleStats::connectFailures;
    };

    static void watch(int epoll, Pending& p, int op, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = &p;
        ::epoll_ctl(epoll, op, p.fd.get(), &ev);
    }

    static void fail(Pending& p, int IdleStats::*counter) {
        p.state = State::Failed;
        p.failure = counter;
    }

    static void startConnect(int epoll, const Target& target, Pending& p, Clock::time_point now) {
        int family = reinterpret_cast<const sockaddr*>(&target.addr)->sa_family;
        p.fd.reset(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!p.fd.valid()) return fail(p, &IdleStats::connectFailures);
        if (::connect(p.fd.get(), reinterpret_cast<const sockaddr*>(&target.addr), target.addrLen) == 0) {
            p.state = State::Sending;
            watch(epoll, p, EPOLL_CTL_ADD, EPOLLOUT);
            return;
        }
        if (errno == EINPROGRESS) {
            p.state = State::Connecting;
            watch(epoll, p, EPOLL_CTL_ADD, EPOLLOUT);
            return;
        }
        if (errno == EAGAIN && family == AF_UNIX) {  // the listen queue is full: try again soon
            p.fd.reset();
            p.state = State::Backoff;
            p.retryAt = now + std::chrono::milliseconds(10);
            return;
        }
        fail(p, &IdleStats::connectFailures);
    }

    static void advance(int epoll, Pending& p) {
        if (p.state == State::Done || p.state == State::Failed || p.state == State::Backoff) return;
        if (p.state == State::Connecting) {
            int soError = 0;
            socklen_t len = sizeof(soError);
            if (::getsockopt(p.fd.get(), SOL_SOCKET, SO_ERROR, &soError, &len) != 0 || soError != 0)
                return fail(p, &IdleStats::connectFailures);
            p.state = State::Sending;
        }
        if (p.state == State::Sending) {
            if (p.sent == 0) {
                int one = 1;  // fails harmlessly (EOPNOTSUPP) on a unix socket
                ::setsockopt(p.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            }
            while (p.sent < p.request.size()) {
                ssize_t n = ::send(p.fd.get(), p.request.data() + p.sent, p.request.size() - p.sent, MSG_NOSIGNAL);
                if (n > 0) {
                    p.sent += static_cast<size_t>(n);
                    continue;
                }
                if (n < 0 && errno == EINTR) continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
                return fail(p, &IdleStats::closedWithoutReply);
            }
            p.request.clear();
            p.request.shrink_to_fit();
            p.state = State::Reading;
            watch(epoll, p, EPOLL_CTL_MOD, EPOLLIN | EPOLLRDHUP);
            return;
        }
        if (p.state == State::Reading) {
            char chunk[4096];
            for (;;) {
                ssize_t n = ::recv(p.fd.get(), chunk, sizeof(chunk), 0);
                if (n > 0) {
                    size_t scanFrom = p.reply.empty() ? 0 : p.reply.size() - 1;
                    p.reply.append(chunk, static_cast<size_t>(n));
                    if (p.reply.find("\n\n", scanFrom) != std::string::npos) {
                        p.state = State::Done;
                        p.reply.clear();
                        p.reply.shrink_to_fit();
                        return;
                    }
                    continue;
                }
                if (n < 0 && errno == EINTR) continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
                return fail(p, &IdleStats::closedWithoutReply);
            }
        }
    }

    std::vector<Fd> fds_;
};

// --- in-process minimal responder (--ceiling-protocol) ---------------------------------------

// One epoll thread on 127.0.0.1:<free port>: reads until a blank line and answers
// "action=dunno\n\n" for each request, keeping connections alive. It stops when told to and
// records the CPU time of its own thread.
class Responder {
  public:
    Responder() {
        listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!listener_.valid()) throw std::runtime_error(std::string("socket: ") + strerror(errno));
        int one = 1;
        ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin.sin_port = 0;
        if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 ||
            ::listen(listener_.get(), SOMAXCONN) != 0)
            throw std::runtime_error(std::string("bind/listen: ") + strerror(errno));
        socklen_t len = sizeof(sin);
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&sin), &len);
        port_ = ntohs(sin.sin_port);
        epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!epoll_.valid() || !wake_.valid())
            throw std::runtime_error(std::string("epoll/eventfd: ") + strerror(errno));
        addWatch(listener_.get(), EPOLLIN);
        addWatch(wake_.get(), EPOLLIN);
        thread_ = std::thread([this] { run(); });
    }
    ~Responder() { stop(); }

    uint16_t port() const { return port_; }

    void stop() {
        if (!thread_.joinable()) return;
        uint64_t one = 1;
        ssize_t ignored = ::write(wake_.get(), &one, sizeof(one));
        (void)ignored;
        thread_.join();
    }

    uint64_t served() const { return served_.load(std::memory_order_relaxed); }
    double cpuSeconds() const { return cpuSeconds_; }
    // The responder thread's CPU time so far (while it runs; e.g. before the load, after --idle).
    double cpuSecondsNow() {
        clockid_t clock;
        timespec ts{};
        if (!thread_.joinable() || ::pthread_getcpuclockid(thread_.native_handle(), &clock) != 0 ||
            ::clock_gettime(clock, &ts) != 0)
            return 0;
        return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
    }

  private:
    struct Connection {
        Fd fd;
        bool lastWasNewline = false;
        std::string pending;  // unsent reply bytes
    };

    void addWatch(int fd, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
    }

    void setWatch(int fd, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
    }

    void acceptAll() {
        for (;;) {
            int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) return;
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            auto conn = std::make_unique<Connection>();
            conn->fd.reset(fd);
            addWatch(fd, EPOLLIN | EPOLLRDHUP);
            connections_[fd] = std::move(conn);
        }
    }

    // Returns false when the connection is finished.
    bool flush(Connection& conn) {
        while (!conn.pending.empty()) {
            ssize_t n = ::send(conn.fd.get(), conn.pending.data(), conn.pending.size(), MSG_NOSIGNAL);
            if (n > 0) {
                conn.pending.erase(0, static_cast<size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                setWatch(conn.fd.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP);
                return true;
            }
            return false;
        }
        setWatch(conn.fd.get(), EPOLLIN | EPOLLRDHUP);
        return true;
    }

    bool handleReadable(Connection& conn) {
        static const char kReply[] = "action=dunno\n\n";
        char buffer[16384];
        for (;;) {
            ssize_t n = ::recv(conn.fd.get(), buffer, sizeof(buffer), 0);
            if (n == 0) return false;
            if (n < 0) {
                if (errno == EINTR) continue;
                return errno == EAGAIN || errno == EWOULDBLOCK;
            }
            unsigned complete = 0;
            const char* p = buffer;
            const char* end = buffer + n;
            while (p < end) {
                const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
                if (!nl) {
                    conn.lastWasNewline = false;
                    break;
                }
                bool blank = (nl == p) ? conn.lastWasNewline : false;
                if (blank) {
                    ++complete;
                    conn.lastWasNewline = false;
                } else {
                    conn.lastWasNewline = true;
                }
                p = nl + 1;
            }
            if (complete) {
                bool wasEmpty = conn.pending.empty();
                for (unsigned i = 0; i < complete; ++i) conn.pending.append(kReply, sizeof(kReply) - 1);
                served_.fetch_add(complete, std::memory_order_relaxed);
                if (wasEmpty && !flush(conn)) return false;
            }
            if (static_cast<size_t>(n) < sizeof(buffer)) return true;
        }
    }

    void run() {
        epoll_event events[256];
        bool running = true;
        while (running) {
            int n = ::epoll_wait(epoll_.get(), events, 256, -1);
            if (n < 0) {
                if (errno == EINTR) continue;
                break;
            }
            for (int i = 0; i < n; ++i) {
                int fd = events[i].data.fd;
                if (fd == wake_.get()) {
                    running = false;
                    continue;
                }
                if (fd == listener_.get()) {
                    acceptAll();
                    continue;
                }
                auto it = connections_.find(fd);
                if (it == connections_.end()) continue;
                Connection& conn = *it->second;
                bool alive = true;
                if (events[i].events & EPOLLOUT) alive = flush(conn);
                if (alive && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                    alive = handleReadable(conn);
                if (alive && (events[i].events & (EPOLLHUP | EPOLLERR))) alive = false;
                if (!alive) connections_.erase(it);  // closes the fd (and drops it from epoll)
            }
        }
        cpuSeconds_ = threadCpuSeconds();
        connections_.clear();
    }

    Fd listener_;
    Fd epoll_;
    Fd wake_;
    uint16_t port_ = 0;
    std::thread thread_;
    std::unordered_map<int, std::unique_ptr<Connection>> connections_;
    std::atomic<uint64_t> served_{0};
    double cpuSeconds_ = 0;
};

// --- daemon CPU from /proc (--daemon-pid) -----------------------------------------------------

struct ProcStat {
    long ppid = 0;
    std::string comm;
    uint64_t ownTicks = 0;       // utime + stime
    uint64_t childrenTicks = 0;  // cutime + cstime (reaped children)
};

bool readProcStat(long pid, ProcStat& out) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) return false;
    auto open = line.find('(');
    auto close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) return false;
    out.comm = line.substr(open + 1, close - open - 1);
    std::istringstream fields(line.substr(close + 2));
    std::vector<std::string> f;
    std::string field;
    while (fields >> field && f.size() < 20) f.push_back(field);
    // f[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    if (f.size() < 15) return false;
    out.ppid = std::stol(f[1]);
    out.ownTicks = std::stoull(f[11]) + std::stoull(f[12]);
    out.childrenTicks = std::stoull(f[13]) + std::stoull(f[14]);
    return true;
}

std::map<long, ProcStat> scanProcesses() {
    std::map<long, ProcStat> all;
    if (DIR* dir = ::opendir("/proc")) {
        while (dirent* entry = ::readdir(dir)) {
            char* end = nullptr;
            long p = std::strtol(entry->d_name, &end, 10);
            if (p <= 0 || *end != '\0') continue;
            ProcStat stat;
            if (readProcStat(p, stat)) all[p] = stat;
        }
        ::closedir(dir);
    }
    return all;
}

// pid and its live descendants (pid first); empty if pid is gone.
std::vector<long> processTree(long pid, const std::map<long, ProcStat>& all) {
    std::vector<long> tree;
    if (all.find(pid) == all.end()) return tree;
    tree.push_back(pid);
    std::vector<long> frontier{pid};
    while (!frontier.empty()) {
        long parent = frontier.back();
        frontier.pop_back();
        for (const auto& [p, stat] : all)
            if (stat.ppid == parent && p != pid) {
                tree.push_back(p);
                frontier.push_back(p);
            }
    }
    return tree;
}

// CPU seconds of pid (with its reaped children) plus its live descendants; -1 if pid is gone.
double processTreeCpuSeconds(long pid) {
    std::map<long, ProcStat> all = scanProcesses();
    std::vector<long> tree = processTree(pid, all);
    if (tree.empty()) return -1;
    uint64_t ticks = all[pid].childrenTicks;
    for (long p : tree) ticks += all[p].ownTicks;
    return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// VmRSS of pid in KiB; 0 when it has none (a zombie), -1 when it is gone.
long readRssKb(long pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    if (!in) return -1;
    std::string line;
    while (std::getline(in, line))
        if (line.compare(0, 6, "VmRSS:") == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    return in.eof() ? 0 : -1;
}

// Samples the memory of a process tree (--daemon-pid): once in start(), every 500 ms from its
// own thread, and once in stop().
class TreeSampler {
  public:
    struct Process {
        long pid = 0;
        long ppid = 0;
        std::string comm;
        long rssFirst = -1;  // at the first sample that saw it
        long rssLast = -1;   // at the last sample that saw it
        long rssMax = -1;
        bool inFirst = false;  // alive at the first sample of the run
        bool inLast = false;   // ... and at the last one
    };

    explicit TreeSampler(long pid) : pid_(pid) {}
    ~TreeSampler() { stop(); }

    void start() {
        sample(Which::First);
        thread_ = std::thread([this] {
            std::unique_lock<std::mutex> lock(mutex_);
            while (!stopping_) {
                if (wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; })) break;
                lock.unlock();
                sample(Which::Middle);
                lock.lock();
            }
        });
    }

    void stop() {
        if (!thread_.joinable()) return;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        thread_.join();
        sample(Which::Last);
    }

    bool known() const { return rootSeenFirst_; }
    long sumFirst() const { return sumFirst_; }
    long sumLast() const { return sumLast_; }
    long sumMax() const { return sumMax_; }
    size_t samples() const { return samples_; }

    // The root first, then by pid.
    std::vector<Process> processes() const {
        std::vector<Process> out;
        for (const auto& [pid, p] : processes_) out.push_back(p);
        std::sort(out.begin(), out.end(), [this](const Process& a, const Process& b) {
            if ((a.pid == pid_) != (b.pid == pid_)) return a.pid == pid_;
            return a.pid < b.pid;
        });
        return out;
    }

  private:
    enum class Which { First, Middle, Last };

    void sample(Which which) {
        std::map<long, ProcStat> all = scanProcesses();
        std::vector<long> tree = processTree(pid_, all);
        long sum = 0;
        std::lock_guard<std::mutex> lock(dataMutex_);
        for (long pid : tree) {
            long rss = readRssKb(pid);
            if (rss < 0) continue;  // exited since the scan
            Process& p = processes_[pid];
            if (p.pid == 0) {
                p.pid = pid;
                p.rssFirst = rss;
            }
            p.ppid = all[pid].ppid;
            p.comm = all[pid].comm;
            p.rssLast = rss;
            p.rssMax = std::max(p.rssMax, rss);
            if (which == Which::First) p.inFirst = true;
            if (which == Which::Last) p.inLast = true;
            sum += rss;
        }
        ++samples_;
        if (which == Which::First) {
            rootSeenFirst_ = !tree.empty();
            sumFirst_ = sum;
        }
        if (which == Which::Last) sumLast_ = sum;
        sumMax_ = std::max(sumMax_, sum);
    }

    long pid_;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::mutex dataMutex_;
    std::map<long, Process> processes_;
    bool rootSeenFirst_ = false;
    long sumFirst_ = 0, sumLast_ = 0, sumMax_ = 0;
    size_t samples_ = 0;
};

// --- report ---------------------------------------------------------------------------------

double selfCpuSeconds(double& user, double& sys) {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    user = static_cast<double>(usage.ru_utime.tv_sec) + static_cast<double>(usage.ru_utime.tv_usec) / 1e6;
    sys = static_cast<double>(usage.ru_stime.tv_sec) + static_cast<double>(usage.ru_stime.tv_usec) / 1e6;
    return user + sys;
}

std::string jsonString(const std::string& text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char esc[8];
            std::snprintf(esc, sizeof(esc), "\\u%04x", c);
            out += esc;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

std::string fixed(double value, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
    return buf;
}

uint32_t percentile(std::vector<uint32_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    size_t rank = static_cast<size_t>(p * static_cast<double>(sorted.size()) + 0.999999);
    if (rank == 0) rank = 1;
    return sorted[std::min(rank, sorted.size()) - 1];
}

struct Report {
    std::string target;
    std::string mode;
    int connections = 0;
    uint64_t requests = 0;
    double durationSeconds = 0;
    uint32_t p50 = 0, p99 = 0, max = 0;
    std::vector<std::pair<std::string, uint64_t>> actions;
    uint64_t closedWithoutReply = 0, connectFailures = 0, timeouts = 0, badReplies = 0;
    uint64_t errors = 0;
    double requestBytesAvg = 0;
    double cpuUser = 0, cpuSys = 0, cpuTotal = 0;
    bool interrupted = false;
    bool ceiling = false;
    uint64_t responderServed = 0;
    double responderCpu = 0;
    bool daemonCpuKnown = false;
    double daemonCpu = 0;
    // --ceiling-sql
    bool sql = false;
    bool mergeSelects = false;
    uint64_t sqlErrors = 0;
    uint64_t policyFound = 0, policyMissing = 0;
    // --idle
    bool idleUsed = false;
    IdleStats idle;
    // --daemon-pid memory
    bool rssKnown = false;
    std::vector<TreeSampler::Process> processes;
    long rssFirst = 0, rssLast = 0, rssMax = 0;
};

double perRequestMicros(double seconds, uint64_t requests) {
    return requests ? seconds * 1e6 / static_cast<double>(requests) : 0;
}

void printText(const Report& r) {
    auto row = [](const char* name, const std::string& value) {
        std::printf("%-24s %s\n", name, value.c_str());
    };
    row("target", r.target + " (" + r.mode + ", " + std::to_string(r.connections) + " connections)");
    if (r.interrupted) row("interrupted", "yes (figures so far)");
    row("requests", std::to_string(r.requests));
    row("duration_s", fixed(r.durationSeconds, 3));
    row("requests_per_s", fixed(r.durationSeconds > 0 ? static_cast<double>(r.requests) / r.durationSeconds : 0, 1));
    row("latency_us", "p50 " + std::to_string(r.p50) + "  p99 " + std::to_string(r.p99) +
                          "  max " + std::to_string(r.max));
    if (r.sql) {
        row("round_trips_per_req", std::to_string(gSqlRoundTrips.load()));
        row("merge_selects", r.mergeSelects ? "1 (both SELECTs in one compound statement)" : "0");
        row("relay_policy", "found " + std::to_string(r.policyFound) + ", missing " +
                                std::to_string(r.policyMissing));
        row("errors", std::to_string(r.errors) + " (sql errors " + std::to_string(r.sqlErrors) +
                          ", connect failures " + std::to_string(r.connectFailures) + ")");
    } else {
        row("request_bytes_avg", fixed(r.requestBytesAvg, 1));
        if (r.actions.empty()) row("actions", "-");
        for (size_t i = 0; i < r.actions.size(); ++i)
            row(i == 0 ? "actions" : "", std::to_string(r.actions[i].second) + "  " + r.actions[i].first);
        row("errors", std::to_string(r.errors) + " (closed without reply " +
                          std::to_string(r.closedWithoutReply) + ", connect failures " +
                          std::to_string(r.connectFailures) + ", timeouts " + std::to_string(r.timeouts) +
                          ", replies without action " + std::to_string(r.badReplies) + ")");
    }
    if (r.idleUsed) {
        row("idle_connections", std::to_string(r.idle.requested) +
                                    (r.idle.interrupted ? " (set-up interrupted)" : ""));
        row("idle_established", std::to_string(r.idle.established) + " (set-up " +
                                    fixed(r.idle.setupSeconds, 3) + " s; failed: connect " +
                                    std::to_string(r.idle.connectFailures) + ", closed without reply " +
                                    std::to_string(r.idle.closedWithoutReply) + ", timeouts " +
                                    std::to_string(r.idle.timeouts) + ")");
        row("idle_open_at_end", std::to_string(r.idle.openAtEnd));
    }
    row("tool_cpu_s", fixed(r.cpuTotal, 3) + " (user " + fixed(r.cpuUser, 3) + ", sys " +
                          fixed(r.cpuSys, 3) + ")");
    double clientCpu = r.cpuTotal - (r.ceiling ? r.responderCpu : 0);
    row("tool_cpu_us_per_req", fixed(perRequestMicros(clientCpu, r.requests), 2) +
                                   (r.ceiling ? " (load side, without the responder)" : ""));
    if (r.ceiling) {
        row("responder_requests", std::to_string(r.responderServed));
        row("responder_cpu_s", fixed(r.responderCpu, 3));
        row("responder_cpu_us_per_req", fixed(perRequestMicros(r.responderCpu, r.responderServed), 2));
    }
    if (r.daemonCpuKnown) {
        row("daemon_cpu_s", fixed(r.daemonCpu, 3));
        row("daemon_cpu_us_per_req", fixed(perRequestMicros(r.daemonCpu, r.requests), 2));
    }
    if (r.rssKnown) {
        row("daemon_rss_kb", "first " + std::to_string(r.rssFirst) + "  last " + std::to_string(r.rssLast) +
                                 "  max " + std::to_string(r.rssMax) + " (sum over the process tree)");
        bool firstProcess = true;
        for (const auto& p : r.processes) {
            char line[256];
            std::snprintf(line, sizeof(line), "pid %ld ppid %ld %-15s rss_kb first %ld last %ld max %ld%s",
                          p.pid, p.ppid, p.comm.c_str(), p.rssFirst, p.rssLast, p.rssMax,
                          p.inFirst && p.inLast ? "" : (p.inFirst ? "  (exited)" : p.inLast ? "  (started during the run)"
                                                                                             : "  (started and exited)"));
            row(firstProcess ? "processes" : "", line);
            firstProcess = false;
        }
    }
    std::fflush(stdout);
}

void printJson(const Report& r) {
    std::string out = "{";
    out += "\"target\":" + jsonString(r.target);
    out += ",\"mode\":" + jsonString(r.mode);
    out += ",\"connections\":" + std::to_string(r.connections);
    out += ",\"interrupted\":" + std::string(r.interrupted ? "true" : "false");
    out += ",\"requests\":" + std::to_string(r.requests);
    out += ",\"duration_s\":" + fixed(r.durationSeconds, 6);
    out += ",\"requests_per_s\":" +
           fixed(r.durationSeconds > 0 ? static_cast<double>(r.requests) / r.durationSeconds : 0, 2);
    out += ",\"latency_us\":{\"p50\":" + std::to_string(r.p50) + ",\"p99\":" + std::to_string(r.p99) +
           ",\"max\":" + std::to_string(r.max) + "}";
    out += ",\"request_bytes_avg\":" + fixed(r.requestBytesAvg, 1);
    out += ",\"actions\":{";
    for (size_t i = 0; i < r.actions.size(); ++i) {
        if (i) out += ",";
        out += jsonString(r.actions[i].first) + ":" + std::to_string(r.actions[i].second);
    }
    out += "}";
    out += ",\"errors\":{\"total\":" + std::to_string(r.errors) +
           ",\"closed_without_reply\":" + std::to_string(r.closedWithoutReply) +
           ",\"connect_failures\":" + std::to_string(r.connectFailures) +
           ",\"timeouts\":" + std::to_string(r.timeouts) +
           ",\"replies_without_action\":" + std::to_string(r.badReplies) +
           ",\"sql_errors\":" + std::to_string(r.sqlErrors) + "}";
    if (r.sql) {
        out += ",\"round_trips_per_request\":" + std::to_string(gSqlRoundTrips.load());
        out += ",\"merge_selects\":" + std::string(r.mergeSelects ? "1" : "0");
        out += ",\"relay_policy\":{\"found\":" + std::to_string(r.policyFound) +
               ",\"missing\":" + std::to_string(r.policyMissing) + "}";
    }
    if (r.idleUsed) {
        out += ",\"idle\":{\"requested\":" + std::to_string(r.idle.requested) +
               ",\"established\":" + std::to_string(r.idle.established) +
               ",\"open_at_end\":" + std::to_string(r.idle.openAtEnd) +
               ",\"setup_s\":" + fixed(r.idle.setupSeconds, 3) +
               ",\"interrupted\":" + (r.idle.interrupted ? "true" : "false") +
               ",\"failed\":{\"connect\":" + std::to_string(r.idle.connectFailures) +
               ",\"closed_without_reply\":" + std::to_string(r.idle.closedWithoutReply) +
               ",\"timeouts\":" + std::to_string(r.idle.timeouts) + "}}";
    }
    out += ",\"tool_cpu_s\":" + fixed(r.cpuTotal, 6);
    out += ",\"tool_cpu_user_s\":" + fixed(r.cpuUser, 6);
    out += ",\"tool_cpu_sys_s\":" + fixed(r.cpuSys, 6);
    double clientCpu = r.cpuTotal - (r.ceiling ? r.responderCpu : 0);
    out += ",\"tool_cpu_us_per_request\":" + fixed(perRequestMicros(clientCpu, r.requests), 3);
    if (r.ceiling) {
        out += ",\"responder_requests\":" + std::to_string(r.responderServed);
        out += ",\"responder_cpu_s\":" + fixed(r.responderCpu, 6);
        out += ",\"responder_cpu_us_per_request\":" +
               fixed(perRequestMicros(r.responderCpu, r.responderServed), 3);
    }
    if (r.daemonCpuKnown) {
        out += ",\"daemon_cpu_s\":" + fixed(r.daemonCpu, 3);
        out += ",\"daemon_cpu_us_per_request\":" + fixed(perRequestMicros(r.daemonCpu, r.requests), 3);
    }
    if (r.rssKnown) {
        out += ",\"daemon_rss_kb\":{\"first\":" + std::to_string(r.rssFirst) +
               ",\"last\":" + std::to_string(r.rssLast) + ",\"max\":" + std::to_string(r.rssMax) + "}";
        out += ",\"processes\":[";
        for (size_t i = 0; i < r.processes.size(); ++i) {
            const auto& p = r.processes[i];
            if (i) out += ",";
            out += "{\"pid\":" + std::to_string(p.pid) + ",\"ppid\":" + std::to_string(p.ppid) +
                   ",\"comm\":" + jsonString(p.comm) + ",\"rss_kb_first\":" + std::to_string(p.rssFirst) +
                   ",\"rss_kb_last\":" + std::to_string(p.rssLast) +
                   ",\"rss_kb_max\":" + std::to_string(p.rssMax) +
                   ",\"whole_run\":" + (p.inFirst && p.inLast ? "true" : "false") + "}";
        }
        out += "]";
    }
    out += "}\n";
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
}

// --- machine costs (--machine-costs) ----------------------------------------------------------

// A daemon thread that asks a database several times per request pays, per round trip, a
// system call to send, one to receive (libmariadb: up to three), the sleep in between and the
// wake-up by the answer. These loops measure that on this machine against a partner that only
// echoes: the CPU one side spends per blocking round trip is a floor under the daemon's CPU
// time per request, however little the database itself does.
constexpr int kCostSyscalls = 200000;
constexpr int kCostRoundTrips = 30000;
constexpr int kCostWarmup = 2000;  // not timed: first page faults, caches, CPU frequency
constexpr size_t kCostMessageBytes = 10;
// The partner always answers at once; a poll this long means it is gone.
constexpr int kCostPollMillis = 10000;

struct RoundTrips {
    double wallMicros = 0;   // per round trip
    double cpuMicros = 0;    // the measuring thread's user + sys, per round trip
    double waitedShare = 0;  // libmariadb way: round trips whose answer was not there yet
};

struct MachineCosts {
    double syscallMicros = 0;
    RoundTrips process, thread, nonblocking;
    double durationSeconds = 0;
    double cpuUser = 0, cpuSys = 0, cpuTotal = 0;  // this process (with the partner thread), the whole mode
};

std::string systemError(const char* what) {
    return std::string(what) + ": " + (errno ? std::strerror(errno) : "end of stream");
}

// Blocking send of all `size` bytes; false on an error.
bool sendExactly(int fd, const char* data, size_t size) {
    while (size > 0) {
        ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

// Blocking receive of exactly `size` bytes; false on an error or the end of the stream.
bool recvExactly(int fd, char* data, size_t size) {
    while (size > 0) {
        ssize_t n = ::recv(fd, data, size, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = 0;
            return false;
        }
        data += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

// libmariadb's way of reading a reply (pvio_socket_read): recv(MSG_DONTWAIT), and when nothing
// is there yet poll() and recv() again, three system calls instead of one. `waited` counts the polls.
bool recvLikeLibmariadb(int fd, char* data, size_t size, uint64_t& waited) {
    while (size > 0) {
        ssize_t n = ::recv(fd, data, size, MSG_DONTWAIT);
        if (n > 0) {
            data += n;
            size -= static_cast<size_t>(n);
            continue;
        }
        if (n == 0) {
            errno = 0;
            return false;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
        ++waited;
        pollfd pfd{fd, POLLIN, 0};
        int ready = ::poll(&pfd, 1, kCostPollMillis);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            if (ready == 0) errno = ETIMEDOUT;
            return false;
        }
    }
    return true;
}

// The partner: receives a message and sends it back, `count` times.
bool echo(int fd, int count) {
    char buffer[kCostMessageBytes];
    for (int i = 0; i < count; ++i)
        if (!recvExactly(fd, buffer, sizeof(buffer)) || !sendExactly(fd, buffer, sizeof(buffer))) return false;
    return true;
}

// The measuring side: kCostWarmup round trips, then kCostRoundTrips timed ones (send, then wait
// for the answer). The partner must echo kCostWarmup + kCostRoundTrips messages.
bool pingPong(int fd, bool nonblocking, RoundTrips& result, std::string& error) {
    char buffer[kCostMessageBytes];
    std::memset(buffer, 'x', sizeof(buffer));
    uint64_t waited = 0;
    auto roundTrip = [&]() {
        if (!sendExactly(fd, buffer, sizeof(buffer))) {
            error = systemError("send");
            return false;
        }
        if (!(nonblocking ? recvLikeLibmariadb(fd, buffer, sizeof(buffer), waited)
                          : recvExactly(fd, buffer, sizeof(buffer)))) {
            error = systemError("recv");
            return false;
        }
        return true;
    };
    for (int i = 0; i < kCostWarmup; ++i)
        if (!roundTrip()) return false;
    waited = 0;
    double cpuBefore = threadCpuSeconds();
    auto start = Clock::now();
    for (int i = 0; i < kCostRoundTrips; ++i)
        if (!roundTrip()) return false;
    double wall = std::chrono::duration<double>(Clock::now() - start).count();
    double cpu = threadCpuSeconds() - cpuBefore;
    result.wallMicros = wall * 1e6 / kCostRoundTrips;
    result.cpuMicros = cpu * 1e6 / kCostRoundTrips;
    result.waitedShare = static_cast<double>(waited) / kCostRoundTrips;
    return true;
}

// CPU per trivial system call. syscall() itself, as glibc may answer some calls without the kernel.
double measureSyscall() {
    auto start = Clock::now();
    for (int i = 0; i < kCostSyscalls; ++i) ::syscall(SYS_getppid);
    return std::chrono::duration<double>(Clock::now() - start).count() * 1e6 / kCostSyscalls;
}

// Round trips with a forked child over a unix socket pair. The child only calls recv, send
// and _exit (safe after fork) and exits at the end of the stream; on any failure here it is
// killed, and it is always reaped.
bool measureProcessRoundTrips(bool nonblocking, RoundTrips& result, std::string& error) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        error = systemError("socketpair");
        return false;
    }
    Fd mine(pair[0]), theirs(pair[1]);
    pid_t pid = ::fork();
    if (pid < 0) {
        error = systemError("fork");
        return false;
    }
    if (pid == 0) {
        ::close(pair[0]);
        ::_exit(echo(pair[1], kCostWarmup + kCostRoundTrips) ? 0 : 1);
    }
    theirs.reset();
    bool ok = pingPong(mine.get(), nonblocking, result, error);
    mine.reset();  // a child still waiting sees the end of the stream
    if (!ok) ::kill(pid, SIGKILL);
    int status = 0;
    pid_t reaped;
    while ((reaped = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    if (ok && (reaped != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        error = reaped != pid ? systemError("waitpid") : "the echoing child process failed";
        ok = false;
    }
    if (!ok) error = "process round trips: " + error;
    return ok;
}

// The same between two threads of this process.
bool measureThreadRoundTrips(RoundTrips& result, std::string& error) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        error = systemError("socketpair");
        return false;
    }
    Fd mine(pair[0]), theirs(pair[1]);
    std::thread partner([fd = theirs.get()] { echo(fd, kCostWarmup + kCostRoundTrips); });
    bool ok = pingPong(mine.get(), false, result, error);
    if (!ok) ::shutdown(mine.get(), SHUT_RDWR);  // a partner still waiting sees the end of the stream
    partner.join();
    if (!ok) error = "thread round trips: " + error;
    return ok;
}

void printMachineCosts(const MachineCosts& m, bool json) {
    if (json) {
        std::string out = "{\"mode\":\"machine-costs\"";
        out += ",\"iterations\":" + std::to_string(kCostRoundTrips);
        out += ",\"warmup_iterations\":" + std::to_string(kCostWarmup);
        out += ",\"syscall_iterations\":" + std::to_string(kCostSyscalls);
        out += ",\"message_bytes\":" + std::to_string(kCostMessageBytes);
        out += ",\"syscall_us\":" + fixed(m.syscallMicros, 3);
        out += ",\"wakeup_rt_process_wall_us\":" + fixed(m.process.wallMicros, 3);
        out += ",\"wakeup_rt_process_cpu_us\":" + fixed(m.process.cpuMicros, 3);
        out += ",\"wakeup_rt_thread_wall_us\":" + fixed(m.thread.wallMicros, 3);
        out += ",\"wakeup_rt_thread_cpu_us\":" + fixed(m.thread.cpuMicros, 3);
        out += ",\"nonblocking_rt_wall_us\":" + fixed(m.nonblocking.wallMicros, 3);
        out += ",\"nonblocking_rt_cpu_us\":" + fixed(m.nonblocking.cpuMicros, 3);
        out += ",\"nonblocking_rt_waited_share\":" + fixed(m.nonblocking.waitedShare, 4);
        out += ",\"duration_s\":" + fixed(m.durationSeconds, 6);
        out += ",\"tool_cpu_s\":" + fixed(m.cpuTotal, 6);
        out += ",\"tool_cpu_user_s\":" + fixed(m.cpuUser, 6);
        out += ",\"tool_cpu_sys_s\":" + fixed(m.cpuSys, 6);
        out += "}\n";
        std::fputs(out.c_str(), stdout);
        std::fflush(stdout);
        return;
    }
    auto row = [](const char* name, const std::string& value) {
        std::printf("%-26s %s\n", name, value.c_str());
    };
    row("mode", "machine costs (no server, no requests)");
    row("iterations", std::to_string(kCostRoundTrips) + " round trips, " + std::to_string(kCostMessageBytes) +
                          " bytes each way (+" + std::to_string(kCostWarmup) + " untimed); " +
                          std::to_string(kCostSyscalls) + " system calls");
    row("syscall_us", fixed(m.syscallMicros, 3) + " (getppid, wall time per call)");
    row("wakeup_rt_process_wall_us", fixed(m.process.wallMicros, 2) + " (blocking send + recv, forked child echoes)");
    row("wakeup_rt_process_cpu_us", fixed(m.process.cpuMicros, 2) + " (this side only: send, sleep, be woken)");
    row("wakeup_rt_thread_wall_us", fixed(m.thread.wallMicros, 2) + " (the same with a thread of this process)");
    row("wakeup_rt_thread_cpu_us", fixed(m.thread.cpuMicros, 2));
    row("nonblocking_rt_wall_us", fixed(m.nonblocking.wallMicros, 2) +
                                      " (child process; recv MSG_DONTWAIT, poll, recv as libmariadb)");
    row("nonblocking_rt_cpu_us", fixed(m.nonblocking.cpuMicros, 2) + " (answer not there yet in " +
                                     fixed(m.nonblocking.waitedShare * 100, 1) + "% of round trips)");
    row("duration_s", fixed(m.durationSeconds, 3));
    row("tool_cpu_s", fixed(m.cpuTotal, 3) + " (user " + fixed(m.cpuUser, 3) + ", sys " + fixed(m.cpuSys, 3) +
                          "; without the child processes)");
    std::fflush(stdout);
}

// --machine-costs: every measurement in turn, in this process; exit 1 when one failed.
int runMachineCosts(const Options& options) {
    MachineCosts m;
    double userBefore = 0, sysBefore = 0;
    selfCpuSeconds(userBefore, sysBefore);
    auto start = Clock::now();
    std::string error;
    bool ok = false;
    try {
        m.syscallMicros = measureSyscall();
        ok = measureProcessRoundTrips(false, m.process, error) && measureThreadRoundTrips(m.thread, error) &&
             measureProcessRoundTrips(true, m.nonblocking, error);
    } catch (const std::exception& e) {  // std::thread could not start
        error = e.what();
    }
    if (!ok) {
        std::cerr << kProgName << ": machine costs: " << error << "\n";
        return kExitErrors;
    }
    m.durationSeconds = std::chrono::duration<double>(Clock::now() - start).count();
    selfCpuSeconds(m.cpuUser, m.cpuSys);
    m.cpuUser -= userBefore;
    m.cpuSys -= sysBefore;
    m.cpuTotal = m.cpuUser + m.cpuSys;
    printMachineCosts(m, options.json);
    return kExitOk;
}

Options parseOptions(int argc, char** argv) {
    enum {
        kOptKeepalive = 1000,
        kOptNewConnection,
        kOptClients,
        kOptSeed,
        kOptJson,
        kOptCeilingProtocol,
        kOptCeilingSql,
        kOptDaemonPid,
        kOptListClients,
        kOptIdle,
        kOptMysqlSocket,
        kOptMysqlHost,
        kOptMysqlDb,
        kOptMysqlUser,
        kOptMysqlPassword,
        kOptMergeSelects,
        kOptMachineCosts,
    };
    static const option kLongOptions[] = {
        {"host", required_argument, nullptr, 'H'},
        {"socket", required_argument, nullptr, 's'},
        {"connections", required_argument, nullptr, 'c'},
        {"keepalive", no_argument, nullptr, kOptKeepalive},
        {"new-connection", no_argument, nullptr, kOptNewConnection},
        {"duration", required_argument, nullptr, 'd'},
        {"requests", required_argument, nullptr, 'n'},
        {"clients", required_argument, nullptr, kOptClients},
        {"seed", required_argument, nullptr, kOptSeed},
        {"timeout", required_argument, nullptr, 't'},
        {"daemon-pid", required_argument, nullptr, kOptDaemonPid},
        {"json", no_argument, nullptr, kOptJson},
        {"ceiling-protocol", no_argument, nullptr, kOptCeilingProtocol},
        {"ceiling-sql", no_argument, nullptr, kOptCeilingSql},
        {"list-clients", no_argument, nullptr, kOptListClients},
        {"idle", required_argument, nullptr, kOptIdle},
        {"mysql-socket", required_argument, nullptr, kOptMysqlSocket},
        {"mysql-host", required_argument, nullptr, kOptMysqlHost},
        {"mysql-db", required_argument, nullptr, kOptMysqlDb},
        {"mysql-user", required_argument, nullptr, kOptMysqlUser},
        {"mysql-password", required_argument, nullptr, kOptMysqlPassword},
        {"merge-selects", no_argument, nullptr, kOptMergeSelects},
        {"machine-costs", no_argument, nullptr, kOptMachineCosts},
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, 'V'},
        {nullptr, 0, nullptr, 0},
    };
    Options options;
    bool hostGiven = false;
    bool newConnectionGiven = false;
    bool idleGiven = false;
    bool connectionsGiven = false;
    bool durationGiven = false;
    bool requestsGiven = false;
    bool mysqlOptionGiven = false;
    bool passwordGiven = false;
    bool userGiven = false;
    uint64_t value = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "H:s:c:d:n:t:hV", kLongOptions, nullptr)) != -1) {
        switch (opt) {
        case 'H':
            options.host = optarg;
            hostGiven = true;
            break;
        case 's':
            options.socketPath = optarg;
            break;
        case 'c':
            if (!parseUnsigned(optarg, value) || value < 1 || value > 10000)
                usageError("--connections: expected 1..10000");
            options.connections = static_cast<int>(value);
            connectionsGiven = true;
            break;
        case kOptKeepalive:
            options.keepalive = true;
            break;
        case kOptNewConnection:
            options.keepalive = false;
            newConnectionGiven = true;
            break;
        case 'd':
            if (!parsePositiveDouble(optarg, options.durationSeconds))
                usageError("--duration: expected a positive number of seconds");
            durationGiven = true;
            break;
        case 'n':
            if (!parseUnsigned(optarg, value) || value < 1) usageError("--requests: expected a positive count");
            options.requests = value;
            requestsGiven = true;
            break;
        case kOptClients:
            if (!parseUnsigned(optarg, value) || value < 1 || value > 1000000)
                usageError("--clients: expected 1..1000000");
            options.clients = static_cast<int>(value);
            break;
        case kOptSeed:
            if (!parseUnsigned(optarg, value)) usageError("--seed: expected an unsigned number");
            options.seed = value;
            break;
        case 't':
            if (!parsePositiveDouble(optarg, options.timeoutSeconds) || options.timeoutSeconds > 3600)
                usageError("--timeout: expected 0 < SECONDS <= 3600");
            break;
        case kOptDaemonPid:
            if (!parseUnsigned(optarg, value) || value < 1 || value > 0x7fffffff)
                usageError("--daemon-pid: expected a process id");
            options.daemonPid = static_cast<long>(value);
            break;
        case kOptJson:
            options.json = true;
            break;
        case kOptCeilingProtocol:
            options.ceilingProtocol = true;
            break;
        case kOptCeilingSql:
            options.ceilingSql = true;
            break;
        case kOptListClients:
            options.listClients = true;
            break;
        case kOptIdle:
            if (!parseUnsigned(optarg, value) || value > 100000) usageError("--idle: expected 0..100000");
            options.idle = static_cast<int>(value);
            idleGiven = true;
            break;
        case kOptMysqlSocket:
            options.mysqlSocket = optarg;
            mysqlOptionGiven = true;
            break;
        case kOptMysqlHost:
            options.mysqlHost = optarg;
            mysqlOptionGiven = true;
            break;
        case kOptMysqlDb:
            options.mysqlDb = optarg;
            mysqlOptionGiven = true;
            break;
        case kOptMysqlUser:
            options.mysqlUser = optarg;
            mysqlOptionGiven = true;
            userGiven = true;
            break;
        case kOptMysqlPassword:
            options.mysqlPassword = optarg;
            mysqlOptionGiven = true;
            passwordGiven = true;
            break;
        case kOptMergeSelects:
            options.mergeSelects = true;
            break;
        case kOptMachineCosts:
            options.machineCosts = true;
            break;
        case 'h':
            printUsage(std::cout);
            std::exit(kExitOk);
        case 'V':
            std::cout << kProgName << " " << PACKAGE_VERSION << "\n";
            std::exit(kExitOk);
        default:
            std::cerr << "Try '" << kProgName << " --help' for more information.\n";
            std::exit(kExitUsage);
        }
    }
    if (optind < argc) usageError(std::string("unexpected argument '") + argv[optind] + "'");
    if (options.machineCosts) {
        // Name every option given that the mode would silently ignore.
        std::string conflicts;
        auto conflict = [&conflicts](bool given, const char* name) {
            if (given) conflicts += (conflicts.empty() ? "" : ", ") + std::string(name);
        };
        conflict(hostGiven, "--host");
        conflict(!options.socketPath.empty(), "--socket");
        conflict(options.ceilingProtocol, "--ceiling-protocol");
        conflict(options.ceilingSql, "--ceiling-sql");
        conflict(options.mergeSelects, "--merge-selects");
        conflict(mysqlOptionGiven, "--mysql-*");
        conflict(newConnectionGiven, "--new-connection");
        conflict(idleGiven, "--idle");
        conflict(options.daemonPid != 0, "--daemon-pid");
        conflict(options.listClients, "--list-clients");
        conflict(connectionsGiven, "-c/--connections");
        conflict(durationGiven, "-d/--duration");
        conflict(requestsGiven, "-n/--requests");
        if (!conflicts.empty())
            usageError("--machine-costs sends no requests and needs no server; drop " + conflicts);
        return options;
    }
    if (options.mergeSelects && !options.ceilingSql) usageError("--merge-selects belongs to --ceiling-sql");
    if (hostGiven && !options.socketPath.empty()) usageError("give either --host or --socket, not both");
    if (options.ceilingProtocol && (hostGiven || !options.socketPath.empty()))
        usageError("--ceiling-protocol starts its own responder; drop --host/--socket");
    if (options.ceilingSql) {
        if (hostGiven || !options.socketPath.empty() || options.ceilingProtocol || newConnectionGiven || idleGiven)
            usageError("--ceiling-sql talks to the database only; drop --host/--socket/--ceiling-protocol/"
                       "--new-connection/--idle");
        if (!options.mysqlSocket.empty() && !options.mysqlHost.empty())
            usageError("give either --mysql-socket or --mysql-host, not both");
        if (options.mysqlDb.empty()) usageError("--mysql-db: expected a database name");
        if (!userGiven) {
            const passwd* pw = ::getpwuid(::geteuid());
            options.mysqlUser = pw && pw->pw_name && *pw->pw_name ? pw->pw_name : "root";
        }
        if (!passwordGiven)
            if (const char* env = std::getenv("MYSQL_PWD")) options.mysqlPassword = env;
    } else if (mysqlOptionGiven) {
        usageError("--mysql-* options belong to --ceiling-sql");
    }
    if (options.durationSeconds == 0 && options.requests == 0) options.durationSeconds = 10;
    return options;
}

// Raises the soft RLIMIT_NOFILE to the hard limit and checks that the run fits (exit 64 if not).
void ensureFileLimit(const Options& options) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
        rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    uint64_t needed = static_cast<uint64_t>(options.idle) + static_cast<uint64_t>(options.connections) + 64;
    if (limit.rlim_cur != RLIM_INFINITY && needed > limit.rlim_cur)
        usageError((options.idle ? "--idle " + std::to_string(options.idle) + " with " : std::string()) +
                   std::to_string(options.connections) + " connections needs " + std::to_string(needed) +
                   " file descriptors (idle + connections + 64), but RLIMIT_NOFILE (ulimit -n) is " +
                   std::to_string(static_cast<unsigned long long>(limit.rlim_cur)) +
                   " (hard limit " + std::to_string(static_cast<unsigned long long>(limit.rlim_max)) +
                   "); raise the hard limit or ask for fewer");
}

// --ceiling-sql: where the database is, from --mysql-host / --mysql-socket.
SqlTarget sqlTargetFrom(const Options& options) {
    SqlTarget sql;
    if (!options.mysqlHost.empty()) {
        Target tcp = resolveHost(options.mysqlHost, "--mysql-host");
        char text[INET6_ADDRSTRLEN] = {};
        const auto* sa = reinterpret_cast<const sockaddr*>(&tcp.addr);
        if (sa->sa_family == AF_INET) {
            const auto* sin = reinterpret_cast<const sockaddr_in*>(&tcp.addr);
            ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
            sql.port = ntohs(sin->sin_port);
        } else {
            const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&tcp.addr);
            ::inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
            sql.port = ntohs(sin6->sin6_port);
        }
        sql.host = text;
        sql.label = tcp.label;
    } else if (!options.mysqlSocket.empty()) {
        sql.socket = options.mysqlSocket;
        sql.label = options.mysqlSocket;
    } else {
        sql.label = "the client library's default socket";
    }
    return sql;
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parseOptions(argc, argv);

    if (options.machineCosts) return runMachineCosts(options);

    if (options.listClients) {
        // clientAddress() repeats after 762 indexes: print each address once.
        std::unordered_set<std::string> seen;
        for (int i = 0; i < options.clients; ++i) {
            std::string address = clientAddress(i);
            if (seen.insert(address).second) std::printf("%s\n", address.c_str());
        }
        return kExitOk;
    }

    ensureFileLimit(options);

    std::unique_ptr<Responder> responder;
    Target target;
    SqlTarget sqlTarget;
    try {
        if (options.ceilingSql) {
            sqlTarget = sqlTargetFrom(options);
            target.label = "sql ceiling via " + sqlTarget.label;
        } else if (options.ceilingProtocol) {
            responder = std::make_unique<Responder>();
            target = resolveHost("127.0.0.1:" + std::to_string(responder->port()));
            target.label = "in-process responder 127.0.0.1:" + std::to_string(responder->port());
        } else if (!options.socketPath.empty()) {
            target = unixTarget(options.socketPath);
        } else {
            target = resolveHost(options.host);
        }
    } catch (const std::exception& e) {
        std::cerr << kProgName << ": " << e.what() << "\n";
        return kExitErrors;
    }

    struct sigaction sa {};
    sa.sa_handler = onSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills the tool outright
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    LoadPlan plan;
    plan.target = &target;
    plan.options = &options;
    plan.total = options.requests;
    const int threads = options.connections;
    std::vector<WorkerStats> stats(static_cast<size_t>(threads));
    if (plan.total || options.durationSeconds > 0) {
        size_t expected = plan.total ? plan.total / static_cast<uint64_t>(threads) + 1 : 1 << 16;
        for (auto& s : stats) s.latenciesMicros.reserve(std::min<size_t>(expected, 1 << 20));
    }

    // --ceiling-sql: every connection is opened and its statements prepared before the clock runs.
    std::vector<std::unique_ptr<SqlSession>> sessions;
    if (options.ceilingSql) {
        if (mysql_library_init(0, nullptr, nullptr) != 0) {
            std::cerr << kProgName << ": cannot initialise the MySQL client library\n";
            return kExitErrors;
        }
        for (int i = 0; i < threads; ++i) {
            sessions.push_back(std::make_unique<SqlSession>(sqlTarget, options));
            std::string error;
            if (!sessions.back()->open(error)) {
                std::cerr << kProgName << ": " << error << "\n";
                sessions.clear();
                mysql_library_end();
                return kExitErrors;
            }
        }
    }

    Report report;
    IdleSet idleSet;
    if (options.idle > 0) {
        report.idleUsed = true;
        try {
            idleSet.open(target, options, report.idle);
        } catch (const std::exception& e) {
            std::cerr << kProgName << ": idle connections: " << e.what() << "\n";
        }
    }

    double daemonCpuBefore = options.daemonPid ? processTreeCpuSeconds(options.daemonPid) : -1;
    if (options.daemonPid && daemonCpuBefore < 0)
        std::cerr << kProgName << ": warning: process " << options.daemonPid << " not found\n";
    std::unique_ptr<TreeSampler> sampler;
    if (options.daemonPid) {
        sampler = std::make_unique<TreeSampler>(options.daemonPid);
        sampler->start();
    }
    double cpuUserBefore = 0, cpuSysBefore = 0;
    selfCpuSeconds(cpuUserBefore, cpuSysBefore);
    // Without the idle connections' requests and set-up.
    uint64_t responderServedBefore = responder ? responder->served() : 0;
    double responderCpuBefore = responder ? responder->cpuSecondsNow() : 0;

    auto start = Clock::now();
    if (options.durationSeconds > 0)
        plan.deadline = start + std::chrono::microseconds(static_cast<int64_t>(options.durationSeconds * 1e6));
    std::vector<std::thread> workers;
    workers.reserve(static_cast<size_t>(threads));
    for (int i = 0; i < threads; ++i) {
        auto& workerStats = stats[static_cast<size_t>(i)];
        if (options.ceilingSql)
            workers.emplace_back(runSqlWorker, std::ref(plan), static_cast<unsigned>(i), std::ref(workerStats),
                                 std::ref(*sessions[static_cast<size_t>(i)]));
        else
            workers.emplace_back(runWorker, std::ref(plan), static_cast<unsigned>(i), std::ref(workerStats));
    }
    for (auto& w : workers) w.join();
    auto end = Clock::now();
    if (sampler) sampler->stop();
    double daemonCpuAfter = options.daemonPid ? processTreeCpuSeconds(options.daemonPid) : -1;
    if (options.idle > 0) {
        report.idle.openAtEnd = idleSet.countOpen();
        idleSet.closeAll();
    }
    if (options.ceilingSql) {
        sessions.clear();
        mysql_library_end();
    }

    report.interrupted = gStop.load();
    if (responder) {
        responder->stop();
        report.ceiling = true;
        report.responderServed = responder->served() - responderServedBefore;
        report.responderCpu = std::max(0.0, responder->cpuSeconds() - responderCpuBefore);
    }
    selfCpuSeconds(report.cpuUser, report.cpuSys);
    report.cpuUser -= cpuUserBefore;  // without the set-up (connections, idle connections)
    report.cpuSys -= cpuSysBefore;
    report.cpuTotal = report.cpuUser + report.cpuSys;
    report.target = target.label;
    report.mode = options.ceilingSql ? "prepared statements, autocommit"
                  : options.keepalive ? "keep-alive"
                                      : "new connection per request";
    report.connections = threads;
    report.durationSeconds = std::chrono::duration<double>(end - start).count();
    report.sql = options.ceilingSql;
    report.mergeSelects = options.mergeSelects;

    std::vector<uint32_t> latencies;
    std::map<std::string, uint64_t> actions;
    uint64_t requestBytes = 0;
    uint64_t attempts = 0;
    for (auto& s : stats) {
        latencies.insert(latencies.end(), s.latenciesMicros.begin(), s.latenciesMicros.end());
        for (const auto& [action, count] : s.actions) actions[action] += count;
        report.closedWithoutReply += s.closedWithoutReply;
        report.connectFailures += s.connectFailures;
        report.timeouts += s.timeouts;
        report.badReplies += s.badReplies;
        report.sqlErrors += s.sqlErrors;
        report.policyFound += s.policyFound;
        report.policyMissing += s.policyMissing;
        requestBytes += s.requestBytes;
    }
    report.requests = latencies.size();
    attempts = report.requests + report.closedWithoutReply + report.timeouts;
    report.requestBytesAvg = attempts ? static_cast<double>(requestBytes) / static_cast<double>(attempts) : 0;
    std::sort(latencies.begin(), latencies.end());
    report.p50 = percentile(latencies, 0.50);
    report.p99 = percentile(latencies, 0.99);
    report.max = latencies.empty() ? 0 : latencies.back();
    report.actions.assign(actions.begin(), actions.end());
    std::sort(report.actions.begin(), report.actions.end(),
              [](const auto& a, const auto& b) { return a.second > b.second; });
    report.errors = report.closedWithoutReply + report.connectFailures + report.timeouts + report.badReplies +
                    report.sqlErrors;
    if (daemonCpuBefore >= 0 && daemonCpuAfter >= 0) {
        report.daemonCpuKnown = true;
        report.daemonCpu = daemonCpuAfter - daemonCpuBefore;
    }
    if (sampler && sampler->known()) {
        report.rssKnown = true;
        report.processes = sampler->processes();
        report.rssFirst = sampler->sumFirst();
        report.rssLast = sampler->sumLast();
        report.rssMax = sampler->sumMax();
    }

    if (options.json) printJson(report);
    else printText(report);
    return report.errors ? kExitErrors : kExitOk;
}
