// Helpers for the integration tests: a private temp dir with free loopback ports, a config
// written from a template, the real mtpolicyd started with fork/exec and stopped again, a
// policy-protocol client connection with bounded reads, process and log inspection.
//
// Ownership: a Daemon owns its temp dir and the processes it started (the master, and through
// the process group it was given, its workers); its destructor always stops them (SIGTERM,
// then SIGKILL by pid after a bound) and removes the dir. A Conn owns one client socket.
// Only loopback addresses and unix sockets inside the temp dir are ever used.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace itest {

using Clock = std::chrono::steady_clock;

// Milliseconds elapsed since `t0`.
long elapsedMs(Clock::time_point t0);
void sleepMs(int ms);
// "12 34 56": pids for assertion messages.
std::string pidList(const std::vector<pid_t>& v);
// The local port of a connected TCP socket, or 0.
int localPort(int fd);

// Paths of the programs under test: $MTPOLICYD_BIN / $POLICYD_CLIENT_BIN, else ./mtpolicyd and
// ./policyd-client (made absolute).
std::string mtpolicydBin();
std::string policydClientBin();

// Raises the soft RLIMIT_NOFILE to at least `want` (capped at the hard limit); returns the new
// soft limit.
rlim_t raiseFdLimit(rlim_t want);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
int freeTcpPort();

// Polls `cond` every `stepMs` until it is true or `timeoutMs` passed; returns its last value.
bool waitFor(const std::function<bool()>& cond, int timeoutMs, int stepMs = 20);

std::string readFile(const std::string& path);
void writeFile(const std::string& path, const std::string& text);
bool fileExists(const std::string& path);
// Number of times `needle` occurs in `hay`.
size_t countOf(const std::string& hay, const std::string& needle);
// `s` as a quoted libconfig string ("..." with '"' and '\\' escaped).
std::string confString(const std::string& s);
// The source tree: $MTPOLICYD_SRCDIR, else ".".
std::string srcdir();

// --- processes ----------------------------------------------------------------------------

struct ProcStat {
    pid_t pid = 0;
    pid_t ppid = 0;
    pid_t pgrp = 0;
    char state = '?';
};
// Reads /proc/<pid>/stat; false when the process does not exist.
bool readProcStat(pid_t pid, ProcStat& out);
// True when the process exists and is not a zombie.
bool processAlive(pid_t pid);
// Live (non-zombie) processes whose parent is `parent`, sorted.
std::vector<pid_t> childrenOf(pid_t parent);
// Live (non-zombie) processes in process group `pgrp`, sorted.
std::vector<pid_t> processGroupMembers(pid_t pgrp);

struct CommandResult {
    int exitCode = -1;  // -1: killed by a signal or timed out
    bool timedOut = false;
    std::string out, err;
};
// Runs argv with `input` on stdin; kills it (by pid) after `timeoutMs`.
CommandResult runCommand(const std::vector<std::string>& argv, const std::string& input,
                         int timeoutMs);

// --- policy protocol client ---------------------------------------------------------------

// Builds a request: the given name=value lines plus request=smtpd_access_policy, then the
// empty line.
std::string makeRequest(const std::vector<std::pair<std::string, std::string>>& attrs = {});
// The value of the first "action=" line of a reply, or "" when there is none.
std::string actionOf(const std::string& reply);

class Conn {
  public:
    enum class Status { Ok, Closed, Timeout, Error };

    Conn() = default;
    ~Conn();
    Conn(Conn&& o) noexcept;
    Conn& operator=(Conn&& o) noexcept;
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    // Connect to 127.0.0.1:port or to a unix socket; on failure returns false and stores errno
    // in lastErrno().
    bool connectTcp(int port, const std::string& host = "127.0.0.1");
    bool connectUnix(const std::string& path);
    // Sends all of `data` (bounded by `timeoutMs`); false on error or timeout.
    bool send(const std::string& data, int timeoutMs = 2000);
    // Reads one reply, up to and including the empty line that ends it. Ok: `reply` holds it.
    // Closed: the peer closed (EOF or reset) first; `reply` holds whatever partial data came.
    Status readReply(std::string& reply, int timeoutMs);
    // send() + readReply().
    Status request(const std::string& req, std::string& reply, int timeoutMs = 2000);
    // Waits for the peer to close. Closed: EOF/reset came; `got` (if given) receives any data
    // that arrived before it. Timeout: still open after `timeoutMs`.
    Status waitClosed(int timeoutMs, std::string* got = nullptr);
    // True when the socket is open and the peer has not closed it (non-blocking check).
    bool peerOpen();

    bool isOpen() const { return fd_ >= 0; }
    int fd() const { return fd_; }
    int lastErrno() const { return errno_; }
    void close();

  private:
    bool finishConnect(int fd, int rc);
    int fd_ = -1;
    int errno_ = 0;
    std::string buf_;
};

const char* statusName(Conn::Status s);

// --- the daemon under test ----------------------------------------------------------------

class Daemon {
  public:
    Daemon();   // makes the temp dir and picks three free ports
    ~Daemon();  // stop() and remove the temp dir
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    const std::string& dir() const { return dir_; }
    std::string path(const std::string& name) const { return dir_ + "/" + name; }
    int port(int i) const { return ports_.at(i - 1); }  // i = 1..3
    std::string sock() const { return path("policy.sock"); }
    std::string logPath() const { return path("mtpolicyd.log"); }
    std::string pidPath() const { return path("mtpolicyd.pid"); }

    // Replaces @DIR@, @LOG@, @PID@, @SOCK@, @PORT1@, @PORT2@, @PORT3@ in `tmpl`.
    std::string expand(const std::string& tmpl) const;
    // Writes expand(tmpl) to dir/name and returns its path.
    std::string writeConfig(const std::string& tmpl, const std::string& name = "mtpolicyd.conf");

    // Starts `mtpolicyd -f -c configPath` and waits (bounded) until a request on
    // 127.0.0.1:readyPort (default port(1)) is answered. Returns "" or an error text that
    // includes the end of the log.
    std::string start(const std::string& configPath, int readyPort = 0, int timeoutMs = 5000);

    pid_t pid() const { return pid_; }
    // The master has been started and has not exited (reaps it when it has).
    bool running();
    // Exit status as returned by waitpid, once the master has exited.
    int exitStatus() const { return status_; }
    std::vector<pid_t> workers() const;
    // Waits until exactly `n` workers run.
    bool waitWorkers(size_t n, int timeoutMs);
    bool signal(int sig);
    // Waits for the master to exit.
    bool waitExit(int timeoutMs);
    // Every live process of the daemon (its process group), the master included.
    std::vector<pid_t> allProcesses() const;

    std::string log() const { return readFile(logPath()); }
    size_t logSize() const { return log().size(); }
    // Waits until the log, from byte `from` on, contains `needle`.
    bool waitLog(const std::string& needle, int timeoutMs, size_t from = 0) const;
    // The last `lines` lines of the log, per-request lines left out (for failure messages).
    std::string logTail(size_t lines = 30) const;

    Conn connect(int port = 0);  // 0: port(1); asserts nothing, check isOpen()
    Conn connectUnix();

    // Stops the daemon: SIGTERM and wait up to `graceMs`, then SIGKILL (the master and every
    // process of its group, by pid). True when SIGTERM alone was enough and nothing is left.
    bool stop(int graceMs = 5000);

  private:
    std::string dir_;
    std::vector<int> ports_;
    pid_t pid_ = -1;
    bool exited_ = false;
    int status_ = 0;
};

}  // namespace itest
