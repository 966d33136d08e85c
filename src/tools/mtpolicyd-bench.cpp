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

#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
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
#include <dirent.h>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

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
        << "                             processes (from /proc) per request\n"
        << "      --ceiling-protocol     measure against an in-process minimal responder\n"
        << "                             (epoll, answers action=dunno) instead of a server\n"
        << "      --json                 print one JSON object line instead of the text\n"
        << "  -h, --help                 show this help and exit\n"
        << "  -V, --version              show the version and exit\n"
        << "\n"
        << "Exit status: 0 without errors, 1 when requests failed, 64 on usage errors.\n";
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

// Resolves --host into a loopback socket address; refuses anything else (exit 64).
Target resolveHost(const std::string& spec) {
    std::string host;
    std::string port;
    if (!spec.empty() && spec[0] == '[') {
        auto close = spec.find(']');
        if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':')
            usageError("--host: expected [ADDR]:PORT, got '" + spec + "'");
        host = spec.substr(1, close - 1);
        port = spec.substr(close + 2);
    } else {
        auto colon = spec.rfind(':');
        if (colon == std::string::npos) usageError("--host: expected HOST:PORT, got '" + spec + "'");
        host = spec.substr(0, colon);
        port = spec.substr(colon + 1);
        if (host.find(':') != std::string::npos)
            usageError("--host: write IPv6 addresses as [ADDR]:PORT, got '" + spec + "'");
    }
    uint64_t portNumber = 0;
    if (!parseUnsigned(port.c_str(), portNumber) || portNumber == 0 || portNumber > 65535)
        usageError("--host: bad port '" + port + "'");

    Target target;
    in_addr v4{};
    in6_addr v6{};
    if (host == "localhost") host = "127.0.0.1";
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
        if ((ntohl(v4.s_addr) >> 24) != 127)
            usageError("refusing --host " + spec +
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
            usageError("refusing --host " + spec +
                       ": only loopback addresses (127.0.0.0/8, ::1, localhost) may be loaded, "
                       "a benchmark must not hit a server on the network");
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&target.addr);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(static_cast<uint16_t>(portNumber));
        sin6->sin6_addr = v6;
        target.addrLen = sizeof(sockaddr_in6);
        target.label = "[" + host + "]:" + port;
    } else {
        usageError("refusing --host " + spec +
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
          epoch_(static_cast<uint64_t>(std::time(nullptr))) {}

    const std::string& next() {
        ++sequence_;
        uint64_t r1 = rng_();
        uint64_t r2 = rng_();
        int client = static_cast<int>(r1 % static_cast<uint64_t>(clients_));
        std::string address = clientAddress(client);
        std::string clientName = "mail" + std::to_string(client) + ".relay.example.com";
        bool unknownName = (r1 >> 20) % 10 == 0;     // 10 %: no reverse DNS
        bool authenticated = (r1 >> 24) % 5 == 0;    // 20 %: SASL submission
        bool clientCert = (r1 >> 28) % 4 == 0;       // 25 %: TLS client certificate
        bool tls = (r1 >> 32) % 10 != 0;             // 90 %: TLS

        unsigned recipients = 1;
        unsigned pick = static_cast<unsigned>(r2 % 100);
        if (pick >= 95) recipients = 6 + static_cast<unsigned>((r2 >> 8) % 45);
        else if (pick >= 70) recipients = 2 + static_cast<unsigned>((r2 >> 8) % 4);
        uint64_t size = 800 + (r2 >> 16) % 60000;
        if ((r2 >> 48) % 50 == 0) size = 100000 + (r2 >> 20) % 10000000;

        char queueId[16];
        std::snprintf(queueId, sizeof(queueId), "%011llX",
                      static_cast<unsigned long long>(splitMix(sequence_ * 131 + threadIndex_) &
                                                      0xFFFFFFFFFFFULL));
        char instance[64];
        std::snprintf(instance, sizeof(instance), "%x.%llx.%llx.0", threadIndex_ + 1,
                      static_cast<unsigned long long>(epoch_),
                      static_cast<unsigned long long>(sequence_));
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
};

struct LoadPlan {
    const Target* target = nullptr;
    const Options* options = nullptr;
    Clock::time_point deadline = Clock::time_point::max();
    uint64_t total = 0;  // 0: unlimited
    std::atomic<uint64_t> claimed{0};
};

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

    uint64_t served() const { return served_; }
    double cpuSeconds() const { return cpuSeconds_; }

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
                served_ += complete;
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
        rusage usage{};
        if (::getrusage(RUSAGE_THREAD, &usage) == 0)
            cpuSeconds_ = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                          static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
        connections_.clear();
    }

    Fd listener_;
    Fd epoll_;
    Fd wake_;
    uint16_t port_ = 0;
    std::thread thread_;
    std::unordered_map<int, std::unique_ptr<Connection>> connections_;
    uint64_t served_ = 0;
    double cpuSeconds_ = 0;
};

// --- daemon CPU from /proc (--daemon-pid) -----------------------------------------------------

struct ProcStat {
    long ppid = 0;
    uint64_t ownTicks = 0;       // utime + stime
    uint64_t childrenTicks = 0;  // cutime + cstime (reaped children)
};

bool readProcStat(long pid, ProcStat& out) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) return false;
    auto close = line.rfind(')');
    if (close == std::string::npos) return false;
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

// CPU seconds of pid (with its reaped children) plus its live descendants; -1 if pid is gone.
double processTreeCpuSeconds(long pid) {
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
    auto root = all.find(pid);
    if (root == all.end()) return -1;
    uint64_t ticks = root->second.ownTicks + root->second.childrenTicks;
    std::vector<long> frontier{pid};
    while (!frontier.empty()) {
        long parent = frontier.back();
        frontier.pop_back();
        for (const auto& [p, stat] : all)
            if (stat.ppid == parent && p != pid) {
                ticks += stat.ownTicks;
                frontier.push_back(p);
            }
    }
    return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

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
    row("request_bytes_avg", fixed(r.requestBytesAvg, 1));
    if (r.actions.empty()) row("actions", "-");
    for (size_t i = 0; i < r.actions.size(); ++i)
        row(i == 0 ? "actions" : "", std::to_string(r.actions[i].second) + "  " + r.actions[i].first);
    row("errors", std::to_string(r.errors) + " (closed without reply " +
                      std::to_string(r.closedWithoutReply) + ", connect failures " +
                      std::to_string(r.connectFailures) + ", timeouts " + std::to_string(r.timeouts) +
                      ", replies without action " + std::to_string(r.badReplies) + ")");
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
           ",\"replies_without_action\":" + std::to_string(r.badReplies) + "}";
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
    out += "}\n";
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
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
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, 'V'},
        {nullptr, 0, nullptr, 0},
    };
    Options options;
    bool hostGiven = false;
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
            break;
        case kOptKeepalive:
            options.keepalive = true;
            break;
        case kOptNewConnection:
            options.keepalive = false;
            break;
        case 'd':
            if (!parsePositiveDouble(optarg, options.durationSeconds))
                usageError("--duration: expected a positive number of seconds");
            break;
        case 'n':
            if (!parseUnsigned(optarg, value) || value < 1) usageError("--requests: expected a positive count");
            options.requests = value;
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
            usageError("--ceiling-sql is not implemented yet");
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
    if (hostGiven && !options.socketPath.empty()) usageError("give either --host or --socket, not both");
    if (options.ceilingProtocol && (hostGiven || !options.socketPath.empty()))
        usageError("--ceiling-protocol starts its own responder; drop --host/--socket");
    if (options.durationSeconds == 0 && options.requests == 0) options.durationSeconds = 10;
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parseOptions(argc, argv);

    std::unique_ptr<Responder> responder;
    Target target;
    try {
        if (options.ceilingProtocol) {
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

    double daemonCpuBefore = options.daemonPid ? processTreeCpuSeconds(options.daemonPid) : -1;
    if (options.daemonPid && daemonCpuBefore < 0)
        std::cerr << kProgName << ": warning: process " << options.daemonPid << " not found\n";

    auto start = Clock::now();
    if (options.durationSeconds > 0)
        plan.deadline = start + std::chrono::microseconds(static_cast<int64_t>(options.durationSeconds * 1e6));
    std::vector<std::thread> workers;
    workers.reserve(static_cast<size_t>(threads));
    for (int i = 0; i < threads; ++i)
        workers.emplace_back(runWorker, std::ref(plan), static_cast<unsigned>(i), std::ref(stats[static_cast<size_t>(i)]));
    for (auto& w : workers) w.join();
    auto end = Clock::now();
    double daemonCpuAfter = options.daemonPid ? processTreeCpuSeconds(options.daemonPid) : -1;

    Report report;
    report.interrupted = gStop.load();
    if (responder) {
        responder->stop();
        report.ceiling = true;
        report.responderServed = responder->served();
        report.responderCpu = responder->cpuSeconds();
    }
    report.cpuTotal = selfCpuSeconds(report.cpuUser, report.cpuSys);
    report.target = target.label;
    report.mode = options.keepalive ? "keep-alive" : "new connection per request";
    report.connections = threads;
    report.durationSeconds = std::chrono::duration<double>(end - start).count();

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
    report.errors = report.closedWithoutReply + report.connectFailures + report.timeouts + report.badReplies;
    if (daemonCpuBefore >= 0 && daemonCpuAfter >= 0) {
        report.daemonCpuKnown = true;
        report.daemonCpu = daemonCpuAfter - daemonCpuBefore;
    }

    if (options.json) printJson(report);
    else printText(report);
    return report.errors ? kExitErrors : kExitOk;
}
