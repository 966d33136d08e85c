// Master-side process helpers: logging destination, daemonizing, pid file, privilege drop.
#include "mtpolicyd/server/Daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

namespace mtp {

void setupLogging(const Config& cfg, const RunOptions& opts) {
    log::setLevel(opts.logLevel >= 0 ? opts.logLevel : cfg.logLevel);
    if (!cfg.logFile.empty())
        log::toFile(cfg.logFile, cfg.syslogIdent);
    else if (opts.foreground)
        log::toStderr(cfg.syslogIdent);
    else
        log::toSyslog(cfg.syslogIdent, cfg.syslogFacility);
}

int daemonize() {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) throw SystemError("pipe", errno);
    pid_t pid = fork();
    if (pid < 0) throw SystemError("fork", errno);
    if (pid > 0) {
        // The parent reports how start-up went, so that init scripts see failures.
        ::close(pipefd[1]);
        // One short message (atomic on a pipe), or EOF when the child died first.
        std::string msg;
        char buf[512];
        ssize_t n;
        while ((n = ::read(pipefd[0], buf, sizeof buf)) < 0 && errno == EINTR) {
        }
        if (n > 0) msg.assign(buf, n);
        if (msg == "ok") _exit(0);
        if (msg.empty()) msg = "the daemon exited during start-up (see the log)";
        std::fprintf(stderr, "mtpolicyd: %s\n", msg.c_str());
        _exit(1);
    }
    ::close(pipefd[0]);
    setsid();
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) ::close(null);
    }
    if (chdir("/") != 0) { /* nothing sensible to do */ }
    return pipefd[1];
}

void notifyStarted(int& fd, const std::string& error) {
    if (fd < 0) return;
    std::string msg = error.empty() ? "ok" : error;
    ssize_t r = ::write(fd, msg.data(), msg.size());
    (void)r;
    ::close(fd);
    fd = -1;
}

void notifySystemd(const std::string& state) {
    const char* path = getenv("NOTIFY_SOCKET");
    if (!path || !*path || (path[0] != '/' && path[0] != '@')) return;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof addr.sun_path) return;
    memcpy(addr.sun_path, path, len);
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    if (::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), alen) < 0)
        MTP_LOG(log::Warning, "cannot notify systemd at %s: %s", path, std::strerror(errno));
    ::close(fd);
}

void checkPidFile(const std::string& path) {
    if (path.empty()) return;
    std::ifstream in(path);
    long old = 0;
    if (in >> old && old > 0 && old != getpid() && (kill(static_cast<pid_t>(old), 0) == 0 || errno == EPERM))
        throw ConfigError("pid file " + path + " names process " + std::to_string(old) +
                          ", which is running: is mtpolicyd already running?");
}

void writePidFile(const std::string& path) {
    if (path.empty()) return;
    checkPidFile(path);
    std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw SystemError("cannot write pid file " + path, errno);
    std::string text = std::to_string(getpid()) + "\n";
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw SystemError("cannot write pid file " + path, e);
    }
}

void removePidFile(const std::string& path) {
    if (path.empty()) return;
    std::ifstream in(path);
    long pid = 0;
    if (in >> pid && pid == getpid()) {
        if (::unlink(path.c_str()) != 0)
            MTP_LOG(log::Info, "cannot remove pid file %s: %s", path.c_str(), std::strerror(errno));
    }
}

void dropPrivileges(const std::string& user, const std::string& group, const std::vector<std::string>& chownPaths) {
    if (user.empty() && group.empty()) {
        if (geteuid() == 0) MTP_LOG(log::Warning, "user not defined: running as root");
        return;
    }
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (!user.empty()) {
        passwd* pw = getpwnam(user.c_str());
        if (!pw) throw ConfigError("key 'user': no such user '" + user + "'");
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    if (!group.empty()) {
        struct group* gr = getgrnam(group.c_str());
        if (!gr) throw ConfigError("key 'group': no such group '" + group + "'");
        gid = gr->gr_gid;
    }
    if (uid == geteuid() && gid == getegid()) return;  // already there
    if (geteuid() != 0)
        throw ConfigError("cannot switch to user '" + user + "' / group '" + group + "': not started as root");
    for (const auto& p : chownPaths)
        if (::chown(p.c_str(), uid, gid) != 0)
            MTP_LOG(log::Warning, "cannot chown %s: %s", p.c_str(), std::strerror(errno));
    MTP_LOG(log::Notice, "Setting gid to \"%d\" and uid to \"%d\"", static_cast<int>(gid), static_cast<int>(uid));
    if (setgroups(1, &gid) != 0) throw SystemError("setgroups", errno);
    if (setgid(gid) != 0) throw SystemError("setgid", errno);
    if (setuid(uid) != 0) throw SystemError("setuid", errno);
    if (setuid(0) == 0) throw ConfigError("could regain root after dropping privileges");
}

}  // namespace mtp
