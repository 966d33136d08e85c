// Binding TCP and unix listening sockets.
#include "mtpolicyd/server/Listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

namespace mtp {

namespace {

const int kBacklog = 1024;

std::string describe(const sockaddr* sa) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
    }
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

// Takes over a listener of the running configuration bound to the same address, if any.
bool reuseListener(const std::string& address, const ListenSpec& spec, std::vector<Listener>& reuse,
                   std::vector<Listener>& out) {
    for (auto& old : reuse) {
        if (old.fd >= 0 && old.address == address) {
            Listener l = old;
            l.spec = spec;
            out.push_back(l);
            old.fd = -1;  // ownership moves to the new set
            return true;
        }
    }
    return false;
}

void bindTcp(const ListenSpec& spec, std::vector<Listener>& reuse, std::vector<Listener>& out) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    const char* host = (spec.host == "*" || spec.host == "0.0.0.0") ? nullptr : spec.host.c_str();
    if (!host) hints.ai_family = AF_INET;
    if (spec.host == "::" ) hints.ai_family = AF_INET6;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host, spec.port.c_str(), &hints, &res);
    if (rc != 0)
        throw ConfigError("cannot resolve listen address '" + spec.text + "': " + gai_strerror(rc));
    std::vector<std::string> seen;
    try {
        for (addrinfo* ai = res; ai; ai = ai->ai_next) {
            std::string addr = describe(ai->ai_addr);
            bool dup = false;
            for (const auto& s : seen) dup = dup || s == addr;
            if (dup) continue;
            seen.push_back(addr);
            if (reuseListener(addr, spec, reuse, out)) continue;
            int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (fd < 0) throw SystemError("socket() for " + addr, errno);
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            if (::bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || ::listen(fd, kBacklog) < 0) {
                int e = errno;
                ::close(fd);
                throw SystemError("cannot listen on " + addr, e);
            }
            Listener l;
            l.spec = spec;
            l.fd = fd;
            l.address = addr;
            out.push_back(l);
            MTP_LOG(log::Notice, "Binding to TCP port %s on host %s", spec.port.c_str(), addr.c_str());
        }
    } catch (...) {
        freeaddrinfo(res);
        throw;
    }
    freeaddrinfo(res);
}

void bindUnix(const ListenSpec& spec, std::vector<Listener>& reuse, std::vector<Listener>& out) {
    if (reuseListener(spec.path, spec, reuse, out)) return;
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, spec.path.c_str(), sizeof sun.sun_path - 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw SystemError("socket() for " + spec.path, errno);
    struct stat st;
    if (::lstat(spec.path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            ::close(fd);
            throw ConfigError("cannot listen on " + spec.path + ": the file exists and is not a socket");
        }
        // A socket file left behind: refuse if something still answers on it.
        int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool alive = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0;
        if (probe >= 0) ::close(probe);
        if (alive) {
            ::close(fd);
            throw ConfigError("cannot listen on " + spec.path + ": another process is serving this socket");
        }
        ::unlink(spec.path.c_str());
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) < 0 || ::listen(fd, kBacklog) < 0) {
        int e = errno;
        ::close(fd);
        throw SystemError("cannot listen on " + spec.path, e);
    }
    // Postfix's smtpd runs as another user: the socket is reachable by everyone who can reach
    // its directory; restrict access with the directory's permissions.
    ::chmod(spec.path.c_str(), 0666);
    Listener l;
    l.spec = spec;
    l.fd = fd;
    l.address = spec.path;
    out.push_back(l);
    MTP_LOG(log::Notice, "Binding to UNIX socket file %s", spec.path.c_str());
}

}  // namespace

void setNonBlocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

std::vector<Listener> bindListeners(const std::vector<ListenSpec>& specs, std::vector<Listener>& reuse) {
    std::vector<Listener> out;
    try {
        for (const auto& spec : specs) {
            if (spec.kind == ListenSpec::Kind::Unix)
                bindUnix(spec, reuse, out);
            else
                bindTcp(spec, reuse, out);
        }
    } catch (...) {
        // Give reused fds back, close the new ones.
        for (auto& l : out) {
            bool wasReused = false;
            for (auto& old : reuse)
                if (old.fd < 0 && old.address == l.address) {
                    old.fd = l.fd;
                    wasReused = true;
                    break;
                }
            if (!wasReused) closeListener(l, true);
        }
        throw;
    }
    return out;
}

void closeListener(Listener& l, bool unlinkSocket) {
    if (l.fd < 0) return;
    ::close(l.fd);
    l.fd = -1;
    if (unlinkSocket && l.spec.kind == ListenSpec::Kind::Unix) ::unlink(l.spec.path.c_str());
}

}  // namespace mtp
