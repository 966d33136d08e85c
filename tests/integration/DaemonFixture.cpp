// Helpers for the integration tests (see DaemonFixture.h): temp dir, free ports, config
// templates, starting/stopping the real mtpolicyd, a bounded policy-protocol client, and
// /proc based process inspection.
#include "DaemonFixture.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace itest {

namespace {

// Process groups of the daemons currently running, for the emergency handler below: if the
// test program is interrupted or crashes, the daemons it started must not outlive it.
constexpr int kMaxDaemons = 16;
std::atomic<pid_t> g_live[kMaxDaemons];

void emergencyHandler(int sig) {
    // Async-signal-safe only: kill, waitpid, nanosleep. SIGTERM first so that each master
    // stops and reaps its workers (no orphans left to an init that may not reap them), then
    // SIGKILL whatever of the group is left after ~3 s.
    for (auto& p : g_live) {
        pid_t g = p.load();
        if (g > 0) ::kill(g, SIGTERM);
    }
    for (int i = 0; i < 300; ++i) {
        bool any = false;
        for (auto& p : g_live) {
            pid_t g = p.load();
            if (g <= 0) continue;
            if (::waitpid(g, nullptr, WNOHANG) == g)
                p.store(0);
            else
                any = true;
        }
        if (!any) break;
        timespec ts{0, 10 * 1000 * 1000};
        nanosleep(&ts, nullptr);
    }
    for (auto& p : g_live) {
        pid_t g = p.load();
        if (g <= 0) continue;
        ::kill(-g, SIGKILL);  // only the process group this test created for the daemon
        ::waitpid(g, nullptr, 0);
    }
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

void installEmergencyHandler() {
    static bool done = false;
    if (done) return;
    done = true;
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGABRT, SIGBUS, SIGFPE}) {
        struct sigaction sa {};
        sa.sa_handler = emergencyHandler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        sigaction(s, &sa, nullptr);
    }
    ::signal(SIGPIPE, SIG_IGN);
}

void registerLive(pid_t g) {
    for (auto& p : g_live) {
        pid_t expected = 0;
        if (p.compare_exchange_strong(expected, g)) return;
    }
}

void unregisterLive(pid_t g) {
    for (auto& p : g_live) {
        pid_t expected = g;
        p.compare_exchange_strong(expected, 0);
    }
}

std::string absolute(const std::string& p) {
    if (p.empty() || p[0] == '/') return p;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return p;
    return std::string(cwd) + "/" + (p.compare(0, 2, "./") == 0 ? p.substr(2) : p);
}

std::string envOr(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return absolute(v && *v ? v : fallback);
}

void replaceAll(std::string& s, const std::string& from, const std::string& to) {
    size_t pos = 0;
    while ((pos = s.find(from, pos)) != std::string::npos) {
        s.replace(pos, from.size(), to);
        pos += to.size();
    }
}

int remainingMs(Clock::time_point deadline) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
}

}  // namespace

void sleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string pidList(const std::vector<pid_t>& v) {
    std::string s;
    for (pid_t p : v) s += (s.empty() ? "" : " ") + std::to_string(p);
    return s;
}

int localPort(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (fd < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
    return ntohs(a.sin_port);
}

long elapsedMs(Clock::time_point t0) {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

std::string mtpolicydBin() { return envOr("MTPOLICYD_BIN", "./mtpolicyd"); }
std::string policydClientBin() { return envOr("POLICYD_CLIENT_BIN", "./policyd-client"); }

rlim_t raiseFdLimit(rlim_t want) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur >= want) return rl.rlim_cur;
    rlim_t target = want;
    if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max) target = rl.rlim_max;
    rl.rlim_cur = target;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

int freeTcpPort() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t len = sizeof sa;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
        int e = errno;
        ::close(fd);
        throw std::runtime_error("bind 127.0.0.1:0: " + std::string(std::strerror(e)));
    }
    ::close(fd);
    return ntohs(sa.sin_port);
}

bool waitFor(const std::function<bool()>& cond, int timeoutMs, int stepMs) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    for (;;) {
        if (cond()) return true;
        if (Clock::now() >= deadline) return cond();
        sleepMs(std::min(stepMs, std::max(1, remainingMs(deadline))));
    }
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void writeFile(const std::string& path, const std::string& text) {
    // Write a new file and rename it over the old one, so that the daemon never reads half a file.
    std::string tmp = path + ".new";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out) throw std::runtime_error("cannot write " + tmp);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        throw std::runtime_error("cannot rename " + tmp + ": " + std::strerror(errno));
}

bool fileExists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

size_t countOf(const std::string& hay, const std::string& needle) {
    if (needle.empty()) return 0;
    size_t n = 0;
    for (size_t pos = hay.find(needle); pos != std::string::npos;
         pos = hay.find(needle, pos + needle.size()))
        ++n;
    return n;
}

// --- processes ----------------------------------------------------------------------------

bool readProcStat(pid_t pid, ProcStat& out) {
    std::string text = readFile("/proc/" + std::to_string(pid) + "/stat");
    // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
    auto close = text.rfind(')');
    if (text.empty() || close == std::string::npos) return false;
    std::istringstream rest(text.substr(close + 1));
    out.pid = pid;
    if (!(rest >> out.state >> out.ppid >> out.pgrp)) return false;
    return true;
}

bool processAlive(pid_t pid) {
    ProcStat st;
    return pid > 0 && readProcStat(pid, st) && st.state != 'Z' && st.state != 'X';
}

namespace {

std::vector<pid_t> scanProc(const std::function<bool(const ProcStat&)>& pred) {
    std::vector<pid_t> out;
    DIR* d = opendir("/proc");
    if (!d) return out;
    while (dirent* e = readdir(d)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (pid <= 0 || *end) continue;
        ProcStat st;
        if (!readProcStat(static_cast<pid_t>(pid), st)) continue;
        if (st.state == 'Z' || st.state == 'X') continue;
        if (pred(st)) out.push_back(static_cast<pid_t>(pid));
    }
    closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

std::vector<pid_t> childrenOf(pid_t parent) {
    return scanProc([parent](const ProcStat& st) { return st.ppid == parent; });
}

std::vector<pid_t> processGroupMembers(pid_t pgrp) {
    return scanProc([pgrp](const ProcStat& st) { return st.pgrp == pgrp; });
}

CommandResult runCommand(const std::vector<std::string>& argv, const std::string& input,
                         int timeoutMs) {
    CommandResult r;
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
        throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execv(args[0], args.data());
        dprintf(2, "exec %s: %s\n", args[0], std::strerror(errno));
        _exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    size_t written = 0;
    if (input.empty()) {
        ::close(in[1]);
        in[1] = -1;
    }
    auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    int outFd = out[0], errFd = err[0];
    while (outFd >= 0 || errFd >= 0) {
        pollfd p[3];
        int n = 0;
        int iOut = -1, iErr = -1, iIn = -1;
        if (outFd >= 0) {
            p[n] = {outFd, POLLIN, 0};
            iOut = n++;
        }
        if (errFd >= 0) {
            p[n] = {errFd, POLLIN, 0};
            iErr = n++;
        }
        if (in[1] >= 0) {
            p[n] = {in[1], POLLOUT, 0};
            iIn = n++;
        }
        int left = remainingMs(deadline);
        if (left == 0) {
            r.timedOut = true;
            break;
        }
        if (::poll(p, n, left) < 0 && errno != EINTR) break;
        char buf[4096];
        auto drain = [&](int idx, int& fd, std::string& dst) {
            if (idx < 0 || !(p[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
            ssize_t k = ::read(fd, buf, sizeof buf);
            if (k > 0) {
                dst.append(buf, k);
            } else if (k == 0 || errno != EINTR) {
                ::close(fd);
                fd = -1;
            }
        };
        drain(iOut, outFd, r.out);
        drain(iErr, errFd, r.err);
        if (iIn >= 0 && (p[iIn].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t k = ::write(in[1], input.data() + written, input.size() - written);
            if (k > 0) written += static_cast<size_t>(k);
            if (k < 0 && errno != EAGAIN && errno != EINTR) written = input.size();
            if (written >= input.size()) {
                ::close(in[1]);
                in[1] = -1;
            }
        }
    }
    if (in[1] >= 0) ::close(in[1]);
    if (outFd >= 0) ::close(outFd);
    if (errFd >= 0) ::close(errFd);
    if (r.timedOut) ::kill(pid, SIGKILL);
    int status = 0;
    // After EOF on both pipes the child is exiting; bound the wait anyway.
    bool reaped =
        waitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, r.timedOut ? 2000 : 3000, 5);
    if (!reaped) {
        ::kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        r.timedOut = true;
    }
    r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// --- policy protocol client ---------------------------------------------------------------

std::string makeRequest(const std::vector<std::pair<std::string, std::string>>& attrs) {
    std::string s = "request=smtpd_access_policy\n";
    for (const auto& kv : attrs) s += kv.first + "=" + kv.second + "\n";
    return s + "\n";
}

std::string actionOf(const std::string& reply) {
    size_t pos = 0;
    while (pos < reply.size()) {
        size_t nl = reply.find('\n', pos);
        std::string line =
            reply.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        if (line.compare(0, 7, "action=") == 0) return line.substr(7);
        if (nl == std::string::npos) break;
        pos = nl + 1;
    }
    return "";
}

const char* statusName(Conn::Status s) {
    switch (s) {
        case Conn::Status::Ok:
            return "ok";
        case Conn::Status::Closed:
            return "closed";
        case Conn::Status::Timeout:
            return "timeout";
        case Conn::Status::Error:
            return "error";
    }
    return "?";
}

Conn::~Conn() { close(); }

Conn::Conn(Conn&& o) noexcept : fd_(o.fd_), errno_(o.errno_), buf_(std::move(o.buf_)) {
    o.fd_ = -1;
}

Conn& Conn::operator=(Conn&& o) noexcept {
    if (this != &o) {
        close();
        fd_ = o.fd_;
        errno_ = o.errno_;
        buf_ = std::move(o.buf_);
        o.fd_ = -1;
    }
    return *this;
}

void Conn::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
}

bool Conn::finishConnect(int fd, int rc) {
    if (rc != 0) {
        errno_ = errno;
        ::close(fd);
        return false;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fd_ = fd;
    errno_ = 0;
    return true;
}

bool Conn::connectTcp(int port, const std::string& host) {
    close();
    sockaddr_storage ss{};
    socklen_t len;
    int family;
    if (host.find(':') != std::string::npos) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(static_cast<uint16_t>(port));
        inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr);
        len = sizeof *s6;
        family = AF_INET6;
    } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(static_cast<uint16_t>(port));
        inet_pton(AF_INET, host.c_str(), &s4->sin_addr);
        len = sizeof *s4;
        family = AF_INET;
    }
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        errno_ = errno;
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Loopback: connect() completes or is refused at once, no need for a non-blocking connect.
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
    return finishConnect(fd, rc);
}

bool Conn::connectUnix(const std::string& path) {
    close();
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.size() >= sizeof sun.sun_path) {
        errno_ = ENAMETOOLONG;
        return false;
    }
    std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        errno_ = errno;
        return false;
    }
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun);
    return finishConnect(fd, rc);
}

bool Conn::send(const std::string& data, int timeoutMs) {
    if (fd_ < 0) return false;
    auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int left = remainingMs(deadline);
            if (left == 0) return false;
            pollfd p{fd_, POLLOUT, 0};
            ::poll(&p, 1, left);
            continue;
        }
        errno_ = errno;
        return false;
    }
    return true;
}

Conn::Status Conn::readReply(std::string& reply, int timeoutMs) {
    reply.clear();
    if (fd_ < 0) return Status::Error;
    auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    for (;;) {
        // A reply is one or more lines and ends with an empty line.
        size_t end = buf_.find("\n\n");
        if (end != std::string::npos) {
            reply = buf_.substr(0, end + 2);
            buf_.erase(0, end + 2);
            return Status::Ok;
        }
        int left = remainingMs(deadline);
        pollfd p{fd_, POLLIN, 0};
        int rc = ::poll(&p, 1, left);
        if (rc < 0 && errno == EINTR) continue;
        if (rc == 0) {
            reply = buf_;
            return Status::Timeout;
        }
        char tmp[8192];
        ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n > 0) {
            buf_.append(tmp, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        reply = buf_;
        buf_.clear();
        if (n == 0 || errno == ECONNRESET || errno == EPIPE) return Status::Closed;
        errno_ = errno;
        return Status::Error;
    }
}

Conn::Status Conn::request(const std::string& req, std::string& reply, int timeoutMs) {
    reply.clear();
    if (!send(req, timeoutMs)) {
        // The server may have closed already: report what reading says (EOF or reset).
        Status s = readReply(reply, 200);
        return s == Status::Ok ? s : (s == Status::Timeout ? Status::Error : s);
    }
    return readReply(reply, timeoutMs);
}

Conn::Status Conn::waitClosed(int timeoutMs, std::string* got) {
    if (fd_ < 0) return Status::Error;
    auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    std::string data = buf_;
    buf_.clear();
    for (;;) {
        int left = remainingMs(deadline);
        pollfd p{fd_, POLLIN, 0};
        int rc = ::poll(&p, 1, left);
        if (rc < 0 && errno == EINTR) continue;
        if (rc == 0) {
            buf_ = data;
            if (got) *got = data;
            return Status::Timeout;
        }
        char tmp[8192];
        ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n > 0) {
            data.append(tmp, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (got) *got = data;
        if (n == 0 || errno == ECONNRESET) return Status::Closed;
        errno_ = errno;
        return Status::Error;
    }
}

bool Conn::peerOpen() {
    if (fd_ < 0) return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return true;  // data waiting: still open
    if (n == 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

// --- the daemon under test ----------------------------------------------------------------

Daemon::Daemon() {
    installEmergencyHandler();
    const char* tmp = std::getenv("TMPDIR");
    std::string base = (tmp && *tmp && std::strlen(tmp) < 60) ? tmp : "/tmp";
    std::string templ = base + "/mtpolicyd-it.XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data()))
        throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    dir_ = buf.data();
    while (ports_.size() < 3) {
        int p = freeTcpPort();
        if (std::find(ports_.begin(), ports_.end(), p) == ports_.end()) ports_.push_back(p);
    }
}

Daemon::~Daemon() {
    stop(3000);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

std::string Daemon::expand(const std::string& tmpl) const {
    std::string s = tmpl;
    replaceAll(s, "@LOG@", logPath());
    replaceAll(s, "@PID@", pidPath());
    replaceAll(s, "@SOCK@", sock());
    replaceAll(s, "@DIR@", dir_);
    for (int i = 1; i <= 3; ++i)
        replaceAll(s, "@PORT" + std::to_string(i) + "@", std::to_string(port(i)));
    return s;
}

std::string Daemon::writeConfig(const std::string& tmpl, const std::string& name) {
    std::string p = path(name);
    writeFile(p, expand(tmpl));
    return p;
}

std::string Daemon::start(const std::string& configPath, int readyPort, int timeoutMs) {
    if (pid_ > 0 && running()) return "daemon already started";
    if (readyPort == 0) readyPort = port(1);
    std::string bin = mtpolicydBin();
    if (access(bin.c_str(), X_OK) != 0) return "cannot execute " + bin + " (set MTPOLICYD_BIN)";
    std::string outPath = path("daemon.stdout"), errPath = path("daemon.stderr");
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return "fork: " + std::string(std::strerror(errno));
    if (pid == 0) {
        // Own process group, so the workers can be found (and, in an emergency, stopped) as
        // the members of the group this test created. If the test program dies, the master
        // gets SIGTERM and stops its workers.
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(126);
        int null = ::open("/dev/null", O_RDONLY);
        int out = ::open(outPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        int err = ::open(errPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (null >= 0) dup2(null, 0);
        if (out >= 0) dup2(out, 1);
        if (err >= 0) dup2(err, 2);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGPIPE})
            ::signal(s, SIG_DFL);
        execl(bin.c_str(), bin.c_str(), "-f", "-c", configPath.c_str(),
              static_cast<char*>(nullptr));
        dprintf(2, "exec %s: %s\n", bin.c_str(), std::strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);  // also from the parent: no window where the group does not exist
    pid_ = pid;
    exited_ = false;
    status_ = 0;
    registerLive(pid);

    auto t0 = Clock::now();
    auto deadline = t0 + std::chrono::milliseconds(timeoutMs);
    while (Clock::now() < deadline) {
        if (!running())
            return "mtpolicyd exited during start-up (status " + std::to_string(status_) +
                   "); stderr: " + readFile(errPath) + "\nlog:\n" + logTail();
        Conn c;
        if (c.connectTcp(readyPort)) {
            std::string reply;
            auto st = c.request(makeRequest({{"instance", "readiness-probe"}}), reply,
                                remainingMs(deadline));
            if (st == Conn::Status::Ok) return "";
        }
        sleepMs(20);
    }
    return "mtpolicyd did not answer on 127.0.0.1:" + std::to_string(readyPort) + " within " +
           std::to_string(timeoutMs) + " ms; stderr: " + readFile(errPath) + "\nlog:\n" + logTail();
}

bool Daemon::running() {
    if (pid_ <= 0 || exited_) return false;
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
        exited_ = true;
        status_ = st;
        return false;
    }
    return r == 0;
}

std::vector<pid_t> Daemon::workers() const {
    if (pid_ <= 0) return {};
    return childrenOf(pid_);
}

bool Daemon::waitWorkers(size_t n, int timeoutMs) {
    return waitFor([&] { return workers().size() == n; }, timeoutMs);
}

bool Daemon::signal(int sig) {
    if (!running()) return false;
    return ::kill(pid_, sig) == 0;
}

bool Daemon::waitExit(int timeoutMs) {
    if (pid_ <= 0) return true;
    return waitFor([&] { return !running(); }, timeoutMs, 5);
}

std::vector<pid_t> Daemon::allProcesses() const {
    if (pid_ <= 0) return {};
    return processGroupMembers(pid_);
}

bool Daemon::waitLog(const std::string& needle, int timeoutMs, size_t from) const {
    return waitFor(
        [&] {
            std::string l = log();
            return l.size() > from && l.find(needle, from) != std::string::npos;
        },
        timeoutMs);
}

std::string Daemon::logTail(size_t lines) const {
    // The per-request lines (" instance=...") drown everything else: leave them out.
    std::istringstream in(log());
    std::vector<std::string> keep;
    std::string line;
    size_t skipped = 0;
    while (std::getline(in, line)) {
        if (line.find(": instance=") != std::string::npos) {
            ++skipped;
            continue;
        }
        keep.push_back(line);
    }
    std::string out = "(" + std::to_string(skipped) + " per-request lines left out)\n";
    for (size_t i = keep.size() > lines ? keep.size() - lines : 0; i < keep.size(); ++i)
        out += keep[i] + "\n";
    return out;
}

Conn Daemon::connect(int p) {
    Conn c;
    c.connectTcp(p == 0 ? port(1) : p);
    return c;
}

Conn Daemon::connectUnix() {
    Conn c;
    c.connectUnix(sock());
    return c;
}

bool Daemon::stop(int graceMs) {
    if (pid_ <= 0) return true;
    bool clean = true;
    if (running()) {
        ::kill(pid_, SIGTERM);
        if (!waitExit(graceMs)) {
            clean = false;
            for (pid_t w : allProcesses()) ::kill(w, SIGKILL);
            ::kill(pid_, SIGKILL);
            waitExit(2000);
        }
    }
    // Whatever is left of the daemon's process group (workers that outlived their master) is
    // a bug, but must not outlive the test either.
    std::vector<pid_t> left = allProcesses();
    if (!left.empty()) {
        clean = false;
        for (pid_t p : left) ::kill(p, SIGKILL);
        waitFor([&] { return allProcesses().empty(); }, 2000);
    }
    unregisterLive(pid_);
    return clean;
}

std::string confString(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string srcdir() {
    const char* d = std::getenv("MTPOLICYD_SRCDIR");
    return d && *d ? d : ".";
}

}  // namespace itest
