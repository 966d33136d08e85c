// policyd-client: a command-line client for the Postfix policy delegation protocol.
// Reads name=value requests (separated by blank lines) from stdin, sends each one to
// a policy server over TCP or a unix socket and prints the action= value(s) of each reply.

#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "mtpolicyd/util/Fd.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1"
#endif

namespace {

constexpr const char* kProgName = "policyd-client";
constexpr const char* kDefaultPort = "12345";

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitConnect = 2;
constexpr int kExitUsage = 64;

using FileDescriptor = mtp::Fd;

// Raised for fatal errors; carries the message and the exit code.
struct ClientError {
    std::string message;
    int exitCode;
};

struct Options {
    std::string host = "localhost";
    std::string port = kDefaultPort;
    std::string socketPath;
    bool keepalive = false;
    bool verbose = false;
    int timeoutSeconds = 30;
};

void printUsage(std::ostream& out) {
    out << "Usage: " << kProgName << " [options] < requests\n"
        << "\n"
        << "Reads policy requests (name=value lines, separated by blank lines) from\n"
        << "stdin, sends them to a policy server and prints the action of each reply.\n"
        << "\n"
        << "Options:\n"
        << "  -H, --host HOST[:PORT]   policy server to connect to (default localhost:12345;\n"
        << "                           use [ADDR]:PORT for IPv6 addresses)\n"
        << "  -s, --socket PATH        connect to the unix socket PATH instead of a host\n"
        << "                           (--socket_path is accepted as an alias)\n"
        << "  -k, --keepalive          send all requests over a single connection\n"
        << "  -v, --verbose            print requests (>>) and responses (<<) to stderr\n"
        << "  -t, --timeout SECONDS    timeout for connecting and for each reply (default 30)\n"
        << "  -h, --help               show this help and exit\n"
        << "  -V, --version            show the version and exit\n";
}

[[noreturn]] void usageError(const std::string& message) {
    std::cerr << kProgName << ": " << message << "\n";
    printUsage(std::cerr);
    std::exit(kExitUsage);
}

// Splits HOST[:PORT], [ADDR][:PORT] or a bare IPv6 address into host and port.
bool parseHostPort(const std::string& spec, std::string& host, std::string& port) {
    port = kDefaultPort;
    if (spec.empty()) return false;
    if (spec[0] == '[') {
        auto close = spec.find(']');
        if (close == std::string::npos || close == 1) return false;
        host = spec.substr(1, close - 1);
        std::string rest = spec.substr(close + 1);
        if (rest.empty()) return true;
        if (rest[0] != ':' || rest.size() == 1) return false;
        port = rest.substr(1);
        return true;
    }
    auto colon = spec.find(':');
    if (colon == std::string::npos) {
        host = spec;
        return true;
    }
    if (spec.find(':', colon + 1) != std::string::npos) {
        // More than one colon: a bare IPv6 address without a port.
        host = spec;
        return true;
    }
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
    return !host.empty() && !port.empty();
}

std::string describeTarget(const Options& options) {
    if (!options.socketPath.empty()) return options.socketPath;
    if (options.host.find(':') != std::string::npos) {
        return "[" + options.host + "]:" + options.port;
    }
    return options.host + ":" + options.port;
}

// Waits until fd is ready for the given events; returns false on timeout.
bool waitForFd(int fd, short events, int timeoutMs) {
    using Clock = std::chrono::steady_clock;
    auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        int wait = left.count() > 0 ? static_cast<int>(left.count()) : 0;
        struct pollfd pfd {};
        pfd.fd = fd;
        pfd.events = events;
        int rc = ::poll(&pfd, 1, wait);
        if (rc > 0) return true;
        if (rc == 0) return false;
        if (errno != EINTR) return true;  // let the following call report the error
    }
}

bool setNonBlocking(int fd, bool enable) {
    int flags = ::fcntl(fd, F_GETFL, 0);
    if (flags < 0) return false;
    flags = enable ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return ::fcntl(fd, F_SETFL, flags) == 0;
}

// Connects fd to addr within timeoutMs; returns 0 or an errno value.
int connectWithTimeout(int fd, const struct sockaddr* addr, socklen_t len, int timeoutMs) {
    if (!setNonBlocking(fd, true)) return errno;
    if (::connect(fd, addr, len) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) return errno;
        if (!waitForFd(fd, POLLOUT, timeoutMs)) return ETIMEDOUT;
        int soError = 0;
        socklen_t soLen = sizeof(soError);
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &soLen) != 0) return errno;
        if (soError != 0) return soError;
    }
    if (!setNonBlocking(fd, false)) return errno;
    return 0;
}

FileDescriptor connectUnix(const Options& options, int timeoutMs) {
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    if (options.socketPath.size() >= sizeof(addr.sun_path)) {
        throw ClientError{
            "cannot connect to " + describeTarget(options) + ": " + std::strerror(ENAMETOOLONG),
            kExitConnect};
    }
    std::memcpy(addr.sun_path, options.socketPath.c_str(), options.socketPath.size() + 1);
    FileDescriptor fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    int err = fd.valid() ? connectWithTimeout(fd.get(), reinterpret_cast<sockaddr*>(&addr),
                                              sizeof(addr), timeoutMs)
                         : errno;
    if (err != 0) {
        throw ClientError{
            "cannot connect to " + describeTarget(options) + ": " + std::strerror(err),
            kExitConnect};
    }
    return fd;
}

FileDescriptor connectTcp(const Options& options, int timeoutMs) {
    struct addrinfo hints {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* result = nullptr;
    int gai = ::getaddrinfo(options.host.c_str(), options.port.c_str(), &hints, &result);
    if (gai != 0) {
        std::string reason = gai == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(gai);
        throw ClientError{"cannot connect to " + describeTarget(options) + ": " + reason,
                          kExitConnect};
    }
    int lastError = ECONNREFUSED;
    FileDescriptor connected;
    for (struct addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
        FileDescriptor fd(::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol));
        if (!fd.valid()) {
            lastError = errno;
            continue;
        }
        int err = connectWithTimeout(fd.get(), ai->ai_addr, ai->ai_addrlen, timeoutMs);
        if (err == 0) {
            connected = std::move(fd);
            break;
        }
        lastError = err;
    }
    ::freeaddrinfo(result);
    if (!connected.valid()) {
        throw ClientError{
            "cannot connect to " + describeTarget(options) + ": " + std::strerror(lastError),
            kExitConnect};
    }
    return connected;
}

// A connection to the policy server with a read buffer kept across responses.
class Connection {
  public:
    explicit Connection(const Options& options) : options_(options) {}

    bool isOpen() const { return fd_.valid(); }
    void close() {
        fd_.reset();
        buffer_.clear();
    }

    void open() {
        close();
        int timeoutMs = timeoutMillis();
        fd_ = options_.socketPath.empty() ? connectTcp(options_, timeoutMs)
                                          : connectUnix(options_, timeoutMs);
        int on = 1;
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        struct timeval tv {};
        tv.tv_sec = options_.timeoutSeconds;
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }

    // True if the server has already closed an idle keepalive connection.
    bool peerClosed() {
        if (!fd_.valid()) return true;
        if (!buffer_.empty()) return false;
        struct pollfd pfd {};
        pfd.fd = fd_.get();
        pfd.events = POLLIN;
        if (::poll(&pfd, 1, 0) <= 0) return false;
        if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) return true;
        char c;
        ssize_t n = ::recv(fd_.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }

    void sendAll(const std::string& data) {
        size_t sent = 0;
        while (sent < data.size()) {
            ssize_t n = ::send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                std::string reason =
                    (errno == EAGAIN || errno == EWOULDBLOCK)
                        ? "timeout after " + std::to_string(options_.timeoutSeconds) + " seconds"
                        : std::strerror(errno);
                throw ClientError{"could not send request (" + reason + ")", kExitFailure};
            }
            sent += static_cast<size_t>(n);
        }
    }

    // Reads one line (without the line terminator); throws on EOF, error or timeout.
    std::string readLine() {
        for (;;) {
            auto nl = buffer_.find('\n');
            if (nl != std::string::npos) {
                std::string line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                return line;
            }
            if (!waitForFd(fd_.get(), POLLIN, timeoutMillis())) {
                throw ClientError{"could not read response (timeout after " +
                                      std::to_string(options_.timeoutSeconds) + " seconds)",
                                  kExitFailure};
            }
            char chunk[4096];
            ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
                throw ClientError{
                    std::string("could not read response (") + std::strerror(errno) + ")",
                    kExitFailure};
            }
            if (n == 0) {
                throw ClientError{"could not read response (connection closed by server)",
                                  kExitFailure};
            }
            buffer_.append(chunk, static_cast<size_t>(n));
        }
    }

  private:
    int timeoutMillis() const {
        long ms = static_cast<long>(options_.timeoutSeconds) * 1000L;
        return ms > 0x7fffffffL ? 0x7fffffff : static_cast<int>(ms);
    }

    const Options& options_;
    FileDescriptor fd_;
    std::string buffer_;
};

// Generates unique instance ids in the style of Postfix (hex fields separated by dots).
class InstanceGenerator {
  public:
    InstanceGenerator() {
        std::random_device rd;
        prefix_ = (static_cast<unsigned long long>(rd()) << 32) | rd();
        pid_ = static_cast<unsigned>(::getpid());
    }

    std::string next() {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%x.%llx.%x", pid_ & 0xffffu, prefix_, counter_++);
        return buf;
    }

  private:
    unsigned long long prefix_ = 0;
    unsigned pid_ = 0;
    unsigned counter_ = 0;
};

bool hasAttribute(const std::vector<std::string>& lines, const char* name) {
    size_t len = std::strlen(name);
    for (const auto& line : lines) {
        if (line.size() > len && line.compare(0, len, name) == 0 && line[len] == '=') return true;
    }
    return false;
}

void dumpLines(const std::string& prefix, const std::vector<std::string>& lines) {
    for (const auto& line : lines) std::cerr << prefix << line << "\n";
    std::cerr << prefix << "\n";
    std::cerr.flush();
}

// Sends one request and prints the action(s) of the reply.
void processRequest(Connection& conn, std::vector<std::string> request, const Options& options,
                    InstanceGenerator& instances) {
    if (!hasAttribute(request, "request")) request.emplace_back("request=smtpd_access_policy");
    if (!hasAttribute(request, "instance")) request.push_back("instance=" + instances.next());

    std::string payload;
    for (const auto& line : request) {
        payload += line;
        payload += '\n';
    }
    payload += '\n';

    if (conn.isOpen() && conn.peerClosed()) conn.close();
    if (!conn.isOpen()) conn.open();
    if (options.verbose) dumpLines(">> ", request);
    conn.sendAll(payload);

    std::vector<std::string> response;
    for (;;) {
        std::string line = conn.readLine();
        if (line.empty()) break;
        response.push_back(std::move(line));
    }
    if (options.verbose) dumpLines("<< ", response);

    for (const auto& line : response) {
        if (line.compare(0, 7, "action=") == 0) std::cout << line.substr(7) << "\n";
    }
    std::cout.flush();

    if (!options.keepalive) conn.close();
}

Options parseOptions(int argc, char** argv) {
    Options options;
    static const struct option longOptions[] = {
        {"host", required_argument, nullptr, 'H'},
        {"socket", required_argument, nullptr, 's'},
        {"socket_path", required_argument, nullptr, 's'},
        {"socket-path", required_argument, nullptr, 's'},
        {"keepalive", no_argument, nullptr, 'k'},
        {"verbose", no_argument, nullptr, 'v'},
        {"timeout", required_argument, nullptr, 't'},
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, 'V'},
        {nullptr, 0, nullptr, 0},
    };
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":H:s:kvt:hV", longOptions, nullptr)) != -1) {
        switch (opt) {
            case 'H':
                if (!parseHostPort(optarg, options.host, options.port)) {
                    usageError(std::string("invalid host specification: ") + optarg);
                }
                break;
            case 's':
                if (*optarg == '\0') usageError("empty socket path");
                options.socketPath = optarg;
                break;
            case 'k':
                options.keepalive = true;
                break;
            case 'v':
                options.verbose = true;
                break;
            case 't': {
                char* end = nullptr;
                errno = 0;
                long value = std::strtol(optarg, &end, 10);
                if (*optarg == '\0' || *end != '\0' || errno != 0 || value <= 0 ||
                    value > 86400L * 365) {
                    usageError(std::string("invalid timeout: ") + optarg);
                }
                options.timeoutSeconds = static_cast<int>(value);
                break;
            }
            case 'h':
                printUsage(std::cout);
                std::exit(kExitOk);
            case 'V':
                std::cout << kProgName << " (mtpolicyd) " << PACKAGE_VERSION << "\n";
                std::exit(kExitOk);
            case ':':
                usageError(std::string("option requires an argument: ") +
                           (optopt ? std::string("-") + static_cast<char>(optopt)
                                   : std::string(argv[optind - 1])));
            default:
                usageError(std::string("unknown option: ") +
                           (optopt ? std::string("-") + static_cast<char>(optopt)
                                   : std::string(argv[optind - 1])));
        }
    }
    if (optind < argc) usageError(std::string("unexpected argument: ") + argv[optind]);
    return options;
}

int run(const Options& options) {
    Connection conn(options);
    InstanceGenerator instances;
    std::vector<std::string> request;
    std::string line;
    while (std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) {
            if (!request.empty()) processRequest(conn, std::move(request), options, instances);
            request.clear();
            continue;
        }
        request.push_back(std::move(line));
        line.clear();
    }
    if (!request.empty()) processRequest(conn, std::move(request), options, instances);
    return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    std::ios::sync_with_stdio(false);
    Options options = parseOptions(argc, argv);
    try {
        return run(options);
    } catch (const ClientError& e) {
        std::cout.flush();
        std::cerr << kProgName << ": " << e.message << "\n";
        return e.exitCode;
    }
}
