// The master: supervises workers from the scoreboard, reloads on HUP, stops on TERM/INT/QUIT.
//
// The master blocks the signals it handles and takes them synchronously with sigtimedwait()
// once a second, so no handler ever runs inside library code and forking is always safe.
// It owns the Config (replaced on a successful reload), the listening sockets and the
// scoreboard; workers get copies of all three at fork.
#include "config.h"
#include "mtpolicyd/server/Master.h"

#include <signal.h>
#ifdef HAVE_SYS_PRCTL_H
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>

#include "mtpolicyd/server/Listener.h"
#include "mtpolicyd/server/Scoreboard.h"
#include "mtpolicyd/server/Worker.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

#include <sys/mman.h>

// Sanitizer builds (tests/sanitize.sh): a worker ends with _exit(), which skips LeakSanitizer's
// check at exit, so the worker runs it itself.
#if defined(__SANITIZE_ADDRESS__)
#define MTP_WORKER_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MTP_WORKER_LEAK_CHECK 1
#endif
#endif
#ifdef MTP_WORKER_LEAK_CHECK
#include <sanitizer/lsan_interface.h>
#endif

namespace mtp {

namespace {
// The header is padded to the slots' alignment.
constexpr size_t kHeaderBytes = 64;
constexpr size_t kMapBytes = kHeaderBytes + sizeof(ScoreSlot) * Scoreboard::kSlots;
}  // namespace

Scoreboard::Scoreboard() {
    map_ = mmap(nullptr, kMapBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map_ == MAP_FAILED) throw SystemError("mmap scoreboard", errno);
    header_ = static_cast<Header*>(map_);  // zero-filled: span 0, every slot Free
    slots_ = reinterpret_cast<ScoreSlot*>(static_cast<char*>(map_) + kHeaderBytes);
}

Scoreboard::~Scoreboard() { munmap(map_, kMapBytes); }

int Scoreboard::allocate() {
    for (size_t i = 0; i < kSlots; ++i) {
        if (slots_[i].get() == WorkerState::Free && slots_[i].pid.load() == 0) {
            slots_[i].requests.store(0);
            slots_[i].connections.store(0);
            slots_[i].open.store(0);
            slots_[i].accepting.store(0);
            slots_[i].set(WorkerState::Starting);
            if (i + 1 > header_->span.load()) header_->span.store(static_cast<uint32_t>(i + 1));
            return static_cast<int>(i);
        }
    }
    return -1;
}

uint32_t Placement::nowMs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint32_t>(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

long Placement::fewestElsewhere(Scoreboard& board, const ScoreSlot& self, uint32_t nowMs) {
    long fewest = -1;
    for (size_t i = 0, n = board.span(); i < n; ++i) {
        ScoreSlot& s = board.slot(static_cast<int>(i));
        if (&s == &self || !s.accepting.load(std::memory_order_relaxed)) continue;
        if (nowMs - s.heartbeat.load(std::memory_order_relaxed) > Placement::kStaleMs) continue;
        WorkerState st = s.get();
        if (st != WorkerState::Idle &&
            !(st == WorkerState::Busy &&
              nowMs - s.busySince.load(std::memory_order_relaxed) < Placement::kBusyGraceMs))
            continue;
        long open = s.open.load(std::memory_order_relaxed);
        if (fewest < 0 || open < fewest) fewest = open;
    }
    return fewest;
}

void Scoreboard::release(int index) {
    slots_[index].pid.store(0);
    slots_[index].accepting.store(0);
    slots_[index].set(WorkerState::Free);
}

namespace {

struct Child {
    int slot;
    unsigned generation;
    time_t started;
    bool retiring = false;
    time_t retiredAt = 0;
};

class Master {
public:
    Master(std::unique_ptr<Config> cfg, const RunOptions& opts) : cfg_(std::move(cfg)), opts_(opts) {}
    int run();

private:
    void spawn();
    void reap();
    void manage();
    void reload();
    void retire(pid_t pid, Child& c);
    void shutdown(int sig);

    std::unique_ptr<Config> cfg_;
    RunOptions opts_;
    std::vector<Listener> listeners_;
    Scoreboard board_;
    std::map<pid_t, Child> children_;
    unsigned generation_ = 1;
    int failures_ = 0;
    time_t nextSpawn_ = 0;
    // Spare workers are stopped as Net::Server::PreFork does: not within kSpareCalmS seconds
    // of a worker being started or stopped, so that a load that makes workers busy and idle in
    // quick turns does not fork and stop workers all the time (each new worker opens its own
    // database connection).
    static constexpr time_t kSpareCalmS = 10;
    time_t lastStart_ = 0, lastSpareStop_ = 0;
    bool stopping_ = false;
};

void Master::spawn() {
    int slot = board_.allocate();
    if (slot < 0) {
        MTP_LOG(log::Err, "scoreboard full: cannot start another worker");
        return;
    }
    const pid_t master = getpid();
    lastStart_ = time(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
        MTP_LOG(log::Err, "fork failed: %s", std::strerror(errno));
        board_.release(slot);
        return;
    }
    if (pid == 0) {
#if defined(__linux__) && defined(HAVE_SYS_PRCTL_H)
        // A worker must not outlive a master that was killed (SIGKILL, OOM killer): it would
        // keep serving the listening sockets that a restarted master cannot bind. The kernel
        // sends SIGTERM (a hard drain, as on shutdown) when the master dies. Privileges were
        // dropped before the fork and are not changed again, which would clear the setting.
        // Signals are still blocked here; runWorker() unblocks them, and a SIGTERM that came
        // before libevent's handler is installed ends the worker at once.
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master) _exit(0);  // the master died before prctl()
#else
        (void)master;
#endif
        board_.slot(slot).pid.store(getpid());
        int rc = runWorker(*cfg_, listeners_, board_, board_.slot(slot));
#ifdef MTP_WORKER_LEAK_CHECK
        __lsan_do_leak_check();
#endif
        _exit(rc);
    }
    board_.slot(slot).pid.store(pid);
    children_[pid] = Child{slot, generation_, time(nullptr)};
    MTP_LOG(log::Info, "started worker %d", static_cast<int>(pid));
}

void Master::reap() {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        auto it = children_.find(pid);
        if (it == children_.end()) continue;
        Child c = it->second;
        children_.erase(it);
        ScoreSlot& s = board_.slot(c.slot);
        uint64_t served = s.requests.load() + s.connections.load();
        board_.release(c.slot);
        bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        std::string how = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                              : "exit status " + std::to_string(WEXITSTATUS(status));
        if (clean || c.retiring) {
            MTP_LOG(log::Info, "worker %d finished (%s)", static_cast<int>(pid), how.c_str());
            continue;
        }
        time_t now = time(nullptr);
        if (served == 0 && now - c.started < 10) {
            ++failures_;
            int delay = std::min(60, 1 << std::min(failures_ - 1, 6));
            nextSpawn_ = now + delay;
            MTP_LOG(log::Err, "worker %d died before serving any request (%s); next start in %d s",
                    static_cast<int>(pid), how.c_str(), delay);
        } else {
            failures_ = 0;
            MTP_LOG(log::Err, "worker %d died (%s); starting a replacement", static_cast<int>(pid), how.c_str());
        }
    }
}

void Master::retire(pid_t pid, Child& c) {
    if (c.retiring) return;
    c.retiring = true;
    c.retiredAt = time(nullptr);
    kill(pid, SIGTERM);
}

void Master::manage() {
    time_t now = time(nullptr);
    int total = 0, idle = 0;
    for (auto& kv : children_) {
        Child& c = kv.second;
        if (c.retiring) {
            // Workers drain within request_timeout; this is the backstop.
            if (now - c.retiredAt > cfg_->requestTimeout + 10) kill(kv.first, SIGKILL);
            continue;
        }
        WorkerState st = board_.slot(c.slot).get();
        if (st == WorkerState::Draining) continue;  // leaving after max_requests
        if (failures_ > 0 && now - c.started >= 10) failures_ = 0;  // workers survive again
        ++total;
        if (st == WorkerState::Idle || st == WorkerState::Starting) ++idle;
    }
    if (stopping_) return;
    int need = std::max(cfg_->minServers - total, cfg_->minSpareServers - idle);
    need = std::min(need, cfg_->maxServers - total);
    if (need > 0 && now >= nextSpawn_) {
        if (failures_ > 0) {
            spawn();  // one at a time while workers keep dying young
            nextSpawn_ = now + std::min(60, 1 << std::min(failures_ - 1, 6));
        } else {
            for (int i = 0; i < need; ++i) spawn();
        }
    } else if (idle > cfg_->maxSpareServers && total > cfg_->minServers && now - lastStart_ > kSpareCalmS &&
               now - lastSpareStop_ > kSpareCalmS) {
        // Only workers without connections are stopped for being spare: closing a kept-alive
        // connection costs Postfix a retry delay on its next request.
        int n = std::min(idle - cfg_->maxSpareServers, total - cfg_->minServers);
        for (auto& kv : children_) {
            if (n <= 0) break;
            Child& c = kv.second;
            const ScoreSlot& s = board_.slot(c.slot);
            if (c.retiring || (s.get() != WorkerState::Idle && s.get() != WorkerState::Starting) ||
                s.open.load(std::memory_order_relaxed) != 0)
                continue;
            MTP_LOG(log::Info, "%d idle workers (max_spare_servers %d): stopping worker %d", idle,
                    cfg_->maxSpareServers, static_cast<int>(kv.first));
            retire(kv.first, c);
            lastSpareStop_ = now;
            --n;
        }
    }
}

void Master::reload() {
    MTP_LOG(log::Notice, "SIGHUP: reloading configuration from %s", cfg_->file.c_str());
    std::unique_ptr<Config> next;
    std::vector<Listener> listeners;
    try {
        next = Config::load(cfg_->file);
        listeners = bindListeners(next->listen, listeners_);
    } catch (const std::exception& e) {
        MTP_LOG(log::Err, "reload failed, keeping the running configuration: %s", e.what());
        return;
    }
    for (auto& l : listeners_) closeListener(l, true);  // those the new config no longer has
    listeners_ = std::move(listeners);
    if (next->user != cfg_->user || next->group != cfg_->group || next->pidFile != cfg_->pidFile)
        MTP_LOG(log::Warning, "user, group and pid_file changes take effect after a restart");
    try {
        setupLogging(*next, opts_);
    } catch (const std::exception& e) {
        MTP_LOG(log::Err, "reload: cannot set up logging: %s", e.what());
    }
    // As at start-up (main.cpp): what the new file has that is accepted but unused.
    for (const auto& w : next->warnings()) MTP_LOG(log::Warning, "%s", w.c_str());
    cfg_ = std::move(next);
    ++generation_;
    failures_ = 0;
    nextSpawn_ = 0;
    // New workers first, so that the listening sockets always have someone accepting.
    for (int i = 0; i < cfg_->minServers; ++i) spawn();
    for (auto& kv : children_)
        if (kv.second.generation != generation_) retire(kv.first, kv.second);
    MTP_LOG(log::Notice, "configuration reloaded: %zu virtual hosts, %zu listening sockets", cfg_->vhosts.size(),
            listeners_.size());
}

void Master::shutdown(int sig) {
    MTP_LOG(log::Notice, "Server closing! (signal %d)", sig);
    stopping_ = true;
    for (auto& kv : children_) retire(kv.first, kv.second);
    time_t deadline = time(nullptr) + cfg_->requestTimeout + 5;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    while (!children_.empty() && time(nullptr) < deadline) {
        timespec ts{0, 200 * 1000 * 1000};
        sigtimedwait(&set, nullptr, &ts);
        reap();
    }
    for (auto& kv : children_) kill(kv.first, SIGKILL);
    while (!children_.empty()) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) break;
        auto it = children_.find(pid);
        if (it != children_.end()) {
            board_.release(it->second.slot);
            children_.erase(it);
        }
    }
    for (auto& l : listeners_) closeListener(l, true);
    removePidFile(cfg_->pidFile);
}

int Master::run() {
    checkPidFile(cfg_->pidFile);
    std::vector<Listener> none;
    listeners_ = bindListeners(cfg_->listen, none);
    int readyFd = opts_.foreground ? -1 : daemonize();
    MTP_LOG(log::Notice, "mtpolicyd %s starting! pid(%d)", PACKAGE_VERSION, static_cast<int>(getpid()));
    try {
        writePidFile(cfg_->pidFile);
    } catch (const std::exception& e) {
        notifyStarted(readyFd, e.what());
        throw;
    }
    std::vector<std::string> owned;
    for (const auto& l : listeners_)
        if (l.spec.kind == ListenSpec::Kind::Unix) owned.push_back(l.spec.path);
    try {
        dropPrivileges(cfg_->user, cfg_->group, owned);
    } catch (const std::exception& e) {
        removePidFile(cfg_->pidFile);
        notifyStarted(readyFd, e.what());
        throw;
    }

    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD}) sigaddset(&set, s);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);

    MTP_LOG(log::Info, "Beginning prefork (%d processes)", cfg_->minServers);
    // Ready: every port is bound, the pid file written, privileges dropped. Workers are
    // forked after this so that they never inherit the start-up pipe.
    notifyStarted(readyFd, "");
    manage();
    notifySystemd("READY=1\nMAINPID=" + std::to_string(getpid()) + "\nSTATUS=listening on " +
                  std::to_string(listeners_.size()) + " sockets");
    MTP_LOG(log::Debug, "Parent ready for children.");
    for (;;) {
        timespec ts{1, 0};
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
            notifySystemd("STOPPING=1");
            shutdown(sig);
            return 0;
        }
        if (sig == SIGHUP) {
            log::reopen();
            for (auto& kv : children_) kill(kv.first, SIGHUP);  // they reopen the log too
            notifySystemd("RELOADING=1");
            reload();
            notifySystemd("READY=1");
        }
        reap();
        manage();
    }
}

}  // namespace

int runMaster(std::unique_ptr<Config> config, const RunOptions& opts) {
    Master m(std::move(config), opts);
    return m.run();
}

}  // namespace mtp
