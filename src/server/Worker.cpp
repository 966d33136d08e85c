// The worker: libevent loop, connection framing, timers, and the hand-off to the plugin chain.
//
// Ownership: the Worker owns its event_base and every Connection (in `conns_`); a Connection
// owns its fd, its events and its Request. A chain runs synchronously inside the read
// callback; while it runs the worker is marked Busy in the scoreboard so the master can keep
// enough idle workers to accept new connections.
#include "mtpolicyd/server/Worker.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <unordered_map>

#include "mtpolicyd/server/RequestParser.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

namespace mtp {

namespace {

double monotonicMs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

struct EventDeleter {
    void operator()(event* e) const {
        if (e) event_free(e);
    }
};
using EventPtr = std::unique_ptr<event, EventDeleter>;

struct BaseDeleter {
    void operator()(event_base* b) const {
        if (b) event_base_free(b);
    }
};

class Worker;

class Connection {
public:
    Connection(Worker& w, int fd, const Listener& l, std::string peer);
    ~Connection();

    Worker& worker;
    int fd;
    const Listener& listener;
    std::string peer;
    EventPtr readEv, writeEv, timer;
    RequestParser parser;
    Request req;
    std::string out;
    size_t outPos = 0;
    uint64_t served = 0;
    bool closeAfterWrite = false;
    enum class Timer { None, Keepalive, Request } timerMode = Timer::None;
};

class Worker {
public:
    Worker(Config& cfg, const std::vector<Listener>& listeners, Scoreboard& board, ScoreSlot& slot);
    int run();

    void onAccept(const Listener& l);
    void onRead(Connection& c);
    void onWrite(Connection& c);
    void onWriteTimeout(Connection& c) {
        MTP_LOG(log::Warning, "[%s]: %s did not read its answer within request_timeout: closing connection",
                c.listener.key().c_str(), c.peer.c_str());
        close(c);
    }
    void onTimer(Connection& c);
    // Stop accepting and exit once no connection is left. Hard (SIGTERM, reload, shutdown):
    // idle connections close now, the others after their answer, and all by request_timeout.
    // Soft (max_requests): open connections are served until their client closes them or
    // they idle out; closing a kept-alive connection would cost Postfix's next request on it
    // a one-second retry delay (smtpd_policy_service_retry_delay).
    void startDrain(const char* why, bool hard);
    void close(Connection& c);
    void onHousekeeping() { sessions_.expire(time(nullptr)); }
    void forceStop() {
        conns_.clear();
        event_base_loopbreak(base_.get());
    }
    const Limits& limits() const { return cfg_.limits; }

private:
    void process(Connection& c);
    bool flush(Connection& c);  // false when the connection was closed
    void armTimer(Connection& c);
    void updateListening();
    void checkDrained();

    Config& cfg_;
    const std::vector<Listener>& listeners_;
    Scoreboard& board_;
    ScoreSlot& slot_;
    std::unique_ptr<event_base, BaseDeleter> base_;
    std::vector<EventPtr> listenEvents_;
    std::vector<EventPtr> signalEvents_;
    EventPtr housekeeping_, heartbeat_, recheckTimer_, drainTimer_;
    std::unordered_map<Connection*, std::unique_ptr<Connection>> conns_;
    SessionStore sessions_;
    const timeval* keepaliveTv_ = nullptr;
    const timeval* requestTv_ = nullptr;
    uint64_t accepted_ = 0;
    bool draining_ = false;
    bool hardDrain_ = false;
    bool accepting_ = true;
    bool fdPaused_ = false;  // set while deciding to stop listening for lack of descriptors
    time_t lastFdWarning_ = 0;
    char buf_[65536];
};

// --- libevent trampolines: nothing may escape into C ------------------------------------

template <typename F>
void guarded(const char* where, F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        MTP_LOG(log::Err, "internal error in %s: %s", where, e.what());
    } catch (...) {
        MTP_LOG(log::Err, "internal error in %s", where);
    }
}

struct ListenArg {
    Worker* w;
    const Listener* l;
};

void acceptCb(evutil_socket_t, short, void* arg) {
    auto* a = static_cast<ListenArg*>(arg);
    guarded("accept", [&] { a->w->onAccept(*a->l); });
}

void readCb(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    guarded("read", [&] { c->worker.onRead(*c); });
}

void writeCb(evutil_socket_t, short what, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    guarded("write", [&] {
        if (what & EV_TIMEOUT)
            c->worker.onWriteTimeout(*c);
        else
            c->worker.onWrite(*c);
    });
}

void timerCb(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    guarded("timer", [&] { c->worker.onTimer(*c); });
}

void signalCb(evutil_socket_t sig, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    if (sig == SIGHUP) {  // the master reopened the log file (rotation): follow it
        log::reopen();
        return;
    }
    guarded("signal", [&] { w->startDrain(sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGQUIT", true); });
}

std::vector<std::unique_ptr<ListenArg>> g_listenArgs;

// ----------------------------------------------------------------------------------------

Connection::Connection(Worker& w, int fd_, const Listener& l, std::string peer_)
    : worker(w), fd(fd_), listener(l), peer(std::move(peer_)), parser(w.limits()) {}

Connection::~Connection() {
    readEv.reset();
    writeEv.reset();
    timer.reset();
    if (fd >= 0) ::close(fd);
}

std::string peerName(int fd, const Listener& l) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        char host[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET) {
            auto* in = reinterpret_cast<sockaddr_in*>(&ss);
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
        }
        if (ss.ss_family == AF_INET6) {
            auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
        }
    }
    return "unix:" + l.address;
}

Worker::Worker(Config& cfg, const std::vector<Listener>& listeners, Scoreboard& board, ScoreSlot& slot)
    : cfg_(cfg),
      listeners_(listeners),
      board_(board),
      slot_(slot),
      base_(event_base_new()),
      sessions_(cfg.sessionExpire, cfg.sessionMaxEntries) {
    if (!base_) throw std::runtime_error("event_base_new failed");
    // Common timeouts: thousands of identical idle timers cost O(1) each in libevent.
    if (cfg_.keepaliveTimeout > 0) {
        timeval tv{cfg_.keepaliveTimeout, 0};
        keepaliveTv_ = event_base_init_common_timeout(base_.get(), &tv);
    }
    timeval rtv{cfg_.requestTimeout, 0};
    requestTv_ = event_base_init_common_timeout(base_.get(), &rtv);
}

int Worker::run() {
    for (const auto& l : listeners_) {
        g_listenArgs.push_back(std::make_unique<ListenArg>(ListenArg{this, &l}));
        EventPtr ev(event_new(base_.get(), l.fd, EV_READ | EV_PERSIST, acceptCb, g_listenArgs.back().get()));
        event_add(ev.get(), nullptr);
        listenEvents_.push_back(std::move(ev));
    }
    for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) {
        EventPtr ev(evsignal_new(base_.get(), sig, signalCb, this));
        event_add(ev.get(), nullptr);
        signalEvents_.push_back(std::move(ev));
    }
    housekeeping_.reset(event_new(
        base_.get(), -1, EV_PERSIST,
        [](evutil_socket_t, short, void* arg) {
            auto* w = static_cast<Worker*>(arg);
            guarded("housekeeping", [&] { w->onHousekeeping(); });
        },
        this));
    timeval hk{5, 0};
    event_add(housekeeping_.get(), &hk);
    // The heartbeat tells the other workers that this one is alive and not stopped.
    heartbeat_.reset(event_new(
        base_.get(), -1, EV_PERSIST,
        [](evutil_socket_t, short, void* arg) {
            static_cast<Worker*>(arg)->slot_.heartbeat.store(Placement::nowMs(), std::memory_order_relaxed);
        },
        this));
    timeval hb{0, Placement::kHeartbeatMs * 1000};
    event_add(heartbeat_.get(), &hb);
    slot_.heartbeat.store(Placement::nowMs(), std::memory_order_relaxed);
    slot_.accepting.store(1, std::memory_order_relaxed);
    slot_.set(WorkerState::Idle);
    event_base_dispatch(base_.get());
    conns_.clear();
    return 0;
}

// Least connections. A worker listens only while no colleague that could accept soon (idle,
// or busy with a chain for less than 50 ms, and with a heartbeat in the last second: not
// stopped or stalled) holds at least two connections fewer than it
// does. The decision is remade after every accept and close, and every 2 ms while not
// listening (a colleague may have taken connections, become busy or gone), so the worker
// holding the fewest connections is always listening or about to. Kept-alive connections
// thus spread evenly, and a database-bound chain gets as many concurrent database sessions
// as there are workers holding connections. The margin of two keeps short-lived connections
// (one request each, counts jittering by one) from ever waiting.
void Worker::updateListening() {
    if (draining_) return;
    bool listen = !fdPaused_;
    if (listen) {
        long fewest = Placement::fewestElsewhere(board_, slot_, Placement::nowMs());
        listen = !(fewest >= 0 && fewest + 2 <= static_cast<long>(conns_.size()));
    }
    if (!listen) {
        if (!recheckTimer_)
            recheckTimer_.reset(evtimer_new(
                base_.get(), [](evutil_socket_t, short, void* arg) { static_cast<Worker*>(arg)->updateListening(); },
                this));
        timeval tv{0, fdPaused_ ? 100000 : 2000};
        if (!evtimer_pending(recheckTimer_.get(), nullptr)) evtimer_add(recheckTimer_.get(), &tv);
    }
    slot_.accepting.store(fdPaused_ ? 0 : 1, std::memory_order_relaxed);
    if (listen == accepting_) return;
    accepting_ = listen;
    for (auto& ev : listenEvents_) listen ? event_add(ev.get(), nullptr) : event_del(ev.get());
}

void Worker::onAccept(const Listener& l) {
    // A few per wake-up, so that the workers woken together share a burst of connections.
    for (int i = 0; i < 4 && accepting_ && !draining_; ++i) {
        int fd = accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                time_t now = time(nullptr);
                if (now - lastFdWarning_ >= 10) {
                    MTP_LOG(log::Err, "cannot accept on %s: %s (%zu connections open); pausing accept",
                            l.address.c_str(), std::strerror(errno), conns_.size());
                    lastFdWarning_ = now;
                }
                // Out of descriptors: stop listening for 100 ms (the backlog keeps the
                // connection), then try again.
                fdPaused_ = true;
                updateListening();
                fdPaused_ = false;
                return;
            }
            MTP_LOG(log::Err, "accept on %s failed: %s", l.address.c_str(), std::strerror(errno));
            return;
        }
        if (l.spec.kind == ListenSpec::Kind::Tcp) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        auto conn = std::make_unique<Connection>(*this, fd, l, peerName(fd, l));
        Connection* c = conn.get();
        MTP_LOG(log::Debug, "accepted connection on port %s from %s", l.key().c_str(), c->peer.c_str());
        if (!cfg_.vhostForKey(l.key()) && !cfg_.vhostByPolicyContext) {
            MTP_LOG(log::Err, "[%s]: no virtual host defined for port %s: closing connection from %s",
                    l.key().c_str(), l.key().c_str(), c->peer.c_str());
            continue;  // conn is destroyed, fd closed
        }
        c->readEv.reset(event_new(base_.get(), fd, EV_READ | EV_PERSIST, readCb, c));
        c->timer.reset(evtimer_new(base_.get(), timerCb, c));
        event_add(c->readEv.get(), nullptr);
        conns_.emplace(c, std::move(conn));
        armTimer(*c);
        slot_.connections.fetch_add(1, std::memory_order_relaxed);
        slot_.open.store(static_cast<uint32_t>(conns_.size()), std::memory_order_relaxed);
        updateListening();
        ++accepted_;
        if (cfg_.maxRequests > 0 && accepted_ >= static_cast<uint64_t>(cfg_.maxRequests)) {
            startDrain("max_requests reached", false);
            return;
        }
    }
}

void Worker::armTimer(Connection& c) {
    if (c.parser.inRequest()) {
        if (c.timerMode != Connection::Timer::Request) {
            evtimer_add(c.timer.get(), requestTv_);
            c.timerMode = Connection::Timer::Request;
        }
    } else if (keepaliveTv_) {
        evtimer_add(c.timer.get(), keepaliveTv_);
        c.timerMode = Connection::Timer::Keepalive;
    } else if (c.timerMode != Connection::Timer::None) {
        evtimer_del(c.timer.get());
        c.timerMode = Connection::Timer::None;
    }
}

void Worker::onTimer(Connection& c) {
    if (c.timerMode == Connection::Timer::Request)
        MTP_LOG(log::Warning, "[%s]: request timed out: closing connection from %s", c.listener.key().c_str(),
                c.peer.c_str());
    else
        MTP_LOG(log::Info, "[%s]: keepalive timeout: closing connection from %s", c.listener.key().c_str(),
                c.peer.c_str());
    close(c);
}

void Worker::close(Connection& c) {
    conns_.erase(&c);  // destroys the connection: events freed, fd closed
    slot_.open.store(static_cast<uint32_t>(conns_.size()), std::memory_order_relaxed);
    if (draining_) checkDrained();
    else if (!accepting_) updateListening();
}

void Worker::onRead(Connection& c) {
    ssize_t n = ::recv(c.fd, buf_, sizeof buf_, 0);
    if (n == 0) {
        if (c.parser.inRequest())
            MTP_LOG(log::Info, "[%s]: connection closed by peer %s in the middle of a request",
                    c.listener.key().c_str(), c.peer.c_str());
        else
            MTP_LOG(log::Debug, "[%s]: connection closed by peer %s", c.listener.key().c_str(), c.peer.c_str());
        close(c);
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        MTP_LOG(log::Err, "[%s]: error while reading request from %s: %s", c.listener.key().c_str(),
                c.peer.c_str(), std::strerror(errno));
        close(c);
        return;
    }
    size_t off = 0;
    while (off < static_cast<size_t>(n)) {
        size_t consumed = 0;
        auto st = c.parser.feed(buf_ + off, n - off, consumed, c.req.attrs);
        off += consumed;
        if (st == RequestParser::Status::Error) {
            MTP_LOG(log::Err, "[%s]: error while reading request from %s: %s", c.listener.key().c_str(),
                    c.peer.c_str(), c.parser.error().c_str());
            close(c);
            return;
        }
        if (st == RequestParser::Status::NeedMore) break;
        // A complete request: the connection object may be closed inside process().
        Connection* cp = &c;
        process(c);
        if (!conns_.count(cp)) return;
        if (c.closeAfterWrite) {
            // Anything the client sent after this request is dropped with the connection.
            event_del(c.readEv.get());
            if (c.outPos >= c.out.size()) close(c);
            return;
        }
    }
    armTimer(c);
}

void Worker::process(Connection& c) {
    double start = monotonicMs();
    slot_.busySince.store(static_cast<uint32_t>(static_cast<uint64_t>(start)), std::memory_order_relaxed);
    slot_.set(WorkerState::Busy);
    Request& r = c.req;
    const VirtualHost* vh = nullptr;
    if (cfg_.vhostByPolicyContext) {
        const std::string* ctx = r.attr("policy_context");
        if (ctx && !ctx->empty()) vh = cfg_.vhostByName(*ctx);
    }
    if (!vh) vh = cfg_.vhostForKey(c.listener.key());
    if (!vh) {
        slot_.set(draining_ ? WorkerState::Draining : WorkerState::Idle);
        MTP_LOG(log::Err, "[%s]: no virtual host defined for port %s (policy_context '%s'): closing connection",
                c.listener.key().c_str(), c.listener.key().c_str(), r.get("policy_context").c_str());
        close(c);
        return;
    }
    r.vhost = vh;
    r.session = &sessions_.acquire(r.get("instance"), time(nullptr));
    bool ok = true;
    try {
        if (log::enabled(log::Debug)) {
            std::string dump;
            for (const auto& kv : r.attrs) dump += (dump.empty() ? "" : ", ") + kv.first + "=" + kv.second;
            log::write(log::Debug, "%s: request: %s", vh->name.c_str(), dump.c_str());
        }
        vh->chain.run(r);
    } catch (const PluginError& e) {
        // While the database is down the driver has logged the outage once; each failing
        // request is then only worth an info line.
        MTP_LOG(e.databaseDown() ? log::Info : log::Err,
                "%s: error while processing request from %s (instance %s): %s", vh->name.c_str(),
                c.peer.c_str(), r.get("instance").c_str(), e.what());
        ok = false;
    } catch (const std::exception& e) {
        MTP_LOG(log::Err, "%s: error while processing request from %s (instance %s): %s", vh->name.c_str(),
                c.peer.c_str(), r.get("instance").c_str(), e.what());
        ok = false;
    }
    double elapsed = monotonicMs() - start;
    sessions_.release(*r.session);
    r.session = nullptr;
    slot_.set(draining_ ? WorkerState::Draining : WorkerState::Idle);
    // A chain that finished is answered even when it took longer than request_timeout: its
    // writes (accounting) are done, and dropping the answer would make Postfix retry the
    // message and count it again.
    if (ok && elapsed > cfg_.requestTimeout * 1000.0)
        MTP_LOG(log::Warning, "%s: request from %s took %.0f ms (request_timeout %d s)", vh->name.c_str(),
                c.peer.c_str(), elapsed, cfg_.requestTimeout);
    if (!ok) {
        close(c);  // no reply: Postfix applies its default_action
        return;
    }
    std::string result;
    if (r.result.actions.empty()) {
        c.out += "action=dunno\n";
    } else {
        for (const auto& a : r.result.actions) {
            c.out += "action=";
            c.out += a;
            c.out += '\n';
        }
    }
    c.out += '\n';
    if (log::enabled(log::Warning)) {
        for (const auto& a : r.result.actions) result += (result.empty() ? "" : ",") + a;
        log::write(log::Warning, "%s: instance=%s, type=%s, client=%s, t=%.3fms, plugin=%s, result=%s",
                   vh->name.c_str(), r.get("instance").c_str(), r.type().c_str(), r.get("client_address").c_str(),
                   elapsed, r.result.plugin.c_str(), result.empty() ? "dunno" : result.c_str());
    }
    ++c.served;
    slot_.requests.fetch_add(1, std::memory_order_relaxed);
    if ((cfg_.maxKeepalive > 0 && c.served >= static_cast<uint64_t>(cfg_.maxKeepalive)) || hardDrain_)
        c.closeAfterWrite = true;
    r.clear();
    if (c.timerMode != Connection::Timer::None) {
        evtimer_del(c.timer.get());
        c.timerMode = Connection::Timer::None;
    }
    flush(c);
}

bool Worker::flush(Connection& c) {
    while (c.outPos < c.out.size()) {
        ssize_t n = ::send(c.fd, c.out.data() + c.outPos, c.out.size() - c.outPos, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (c.out.size() - c.outPos > 1 << 20) {
                    MTP_LOG(log::Err, "[%s]: %s does not read its answers: closing connection",
                            c.listener.key().c_str(), c.peer.c_str());
                    close(c);
                    return false;
                }
                if (!c.writeEv) c.writeEv.reset(event_new(base_.get(), c.fd, EV_WRITE, writeCb, &c));
                event_add(c.writeEv.get(), requestTv_);
                return true;
            }
            MTP_LOG(log::Info, "[%s]: error writing to %s: %s", c.listener.key().c_str(), c.peer.c_str(),
                    std::strerror(errno));
            close(c);
            return false;
        }
        c.outPos += static_cast<size_t>(n);
    }
    c.out.clear();
    c.outPos = 0;
    if (c.closeAfterWrite) {
        close(c);
        return false;
    }
    return true;
}

void Worker::onWrite(Connection& c) {
    if (flush(c) && !c.closeAfterWrite) armTimer(c);
}

void Worker::startDrain(const char* why, bool hard) {
    if (draining_ && (hardDrain_ || !hard)) return;
    if (!draining_)
        MTP_LOG(log::Info, "worker %d stopping (%s): %zu connections open", static_cast<int>(getpid()), why,
                conns_.size());
    draining_ = true;
    hardDrain_ = hard;
    slot_.set(WorkerState::Draining);
    slot_.accepting.store(0, std::memory_order_relaxed);
    for (auto& ev : listenEvents_) event_del(ev.get());
    if (recheckTimer_) evtimer_del(recheckTimer_.get());
    if (!drainTimer_)
        drainTimer_.reset(evtimer_new(
            base_.get(),
            [](evutil_socket_t, short, void* arg) {
                auto* w = static_cast<Worker*>(arg);
                if (w->hardDrain_) {
                    MTP_LOG(log::Info, "worker %d: drain deadline reached", static_cast<int>(getpid()));
                    w->forceStop();
                } else {
                    w->startDrain("connections still open after keepalive_timeout", true);
                }
            },
            this));
    if (!hard) {
        // Idle connections close themselves at keepalive_timeout; this bounds the rest.
        timeval tv{(cfg_.keepaliveTimeout > 0 ? cfg_.keepaliveTimeout : 600) + cfg_.requestTimeout, 0};
        evtimer_add(drainTimer_.get(), &tv);
        checkDrained();
        return;
    }
    // Idle connections that have been used go now; the others get to finish their request.
    std::vector<Connection*> idle;
    for (auto& kv : conns_) {
        Connection* c = kv.first;
        if (!c->parser.inRequest() && c->outPos >= c->out.size() && c->served > 0) idle.push_back(c);
        else c->closeAfterWrite = true;
    }
    for (Connection* c : idle) close(*c);
    timeval tv{cfg_.requestTimeout, 0};
    evtimer_add(drainTimer_.get(), &tv);
    checkDrained();
}

void Worker::checkDrained() {
    if (conns_.empty()) event_base_loopbreak(base_.get());
}

}  // namespace

int runWorker(Config& config, const std::vector<Listener>& listeners, Scoreboard& board, ScoreSlot& slot) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);  // until libevent installs its handler: a HUP must not kill us
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    try {
        config.startPlugins();
        Worker w(config, listeners, board, slot);
        return w.run();
    } catch (const std::exception& e) {
        MTP_LOG(log::Err, "worker %d failed: %s", static_cast<int>(getpid()), e.what());
        return 1;
    }
}

}  // namespace mtp
