// PostfixLoad: client threads that load a policy service the way Postfix's smtpd processes
// do (kept-alive connections, one outstanding request each, unanswered requests resent with
// the same instance on a new connection). Shared by the fault and MariaDB accounting tests.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "DaemonFixture.h"

namespace itest {

// Client threads that behave like Postfix's smtpd processes towards a policy service: each
// holds one kept-alive connection and has one request outstanding at a time; a request whose
// connection is found closed before it is sent, or is closed after it was sent without an
// answer, is sent again - the same bytes, so the same instance - on a new connection after
// `retryMs`, until it is answered or `giveUpMs` have passed. Every event is recorded with its
// time. stop() lets each thread finish its current message first (bounded by giveUpMs).
class PostfixLoad {
  public:
    enum class Kind { Answer, NoReply, IdleClosed, Hang, ConnectFailed, GaveUp };
    struct Event {
        Clock::time_point t;
        Kind kind;
        int thread;
        int attempt;
        int port;  // local port of the connection used (0: none)
        std::string action;
    };
    struct Msg {
        std::string instance;
        int thread = 0;
        long long rcpt = 0, size = 0;
        int attempts = 0;
        bool answered = false;
        std::string action;
        Clock::time_point firstSent, answeredAt;
    };
    using Maker = std::function<std::string(const Msg&)>;

    PostfixLoad(int port, std::string tag, int threads, int paceMs, Maker make, int readMs = 10000,
         int giveUpMs = 30000, int retryMs = 50)
        : port_(port),
          tag_(std::move(tag)),
          threads_(threads),
          paceMs_(paceMs),
          readMs_(readMs),
          giveUpMs_(giveUpMs),
          retryMs_(retryMs),
          make_(std::move(make)),
          curPort_(static_cast<size_t>(threads)) {}
    ~PostfixLoad() { stop(); }

    void start() {
        for (int t = 0; t < threads_; ++t) workers_.emplace_back([this, t] { run(t); });
    }
    void stop() {
        stop_ = true;
        for (auto& w : workers_)
            if (w.joinable()) w.join();
        workers_.clear();
    }

    size_t answered() const { return answered_.load(); }
    int currentPort(int thread) const { return curPort_.at(static_cast<size_t>(thread)).load(); }

    std::vector<Event> events() const {
        std::lock_guard<std::mutex> lk(mu_);
        return events_;
    }
    std::vector<Msg> messages() const {
        std::lock_guard<std::mutex> lk(mu_);
        return msgs_;
    }
    size_t countBetween(Kind kind, Clock::time_point from, Clock::time_point to) const {
        std::lock_guard<std::mutex> lk(mu_);
        size_t n = 0;
        for (const auto& e : events_)
            if (e.kind == kind && e.t >= from && e.t < to) ++n;
        return n;
    }
    size_t countOf(Kind kind) const {
        return countBetween(kind, Clock::time_point::min(), Clock::time_point::max());
    }
    // The first answer at or after `from`; with `firstAttemptOnly`, only to a message's first
    // attempt (one that cannot have been served from an earlier attempt's state).
    bool firstAnswerAfter(Clock::time_point from, Clock::time_point& at, bool firstAttemptOnly = false) const {
        std::lock_guard<std::mutex> lk(mu_);
        bool found = false;
        for (const auto& e : events_)
            if (e.kind == Kind::Answer && (!firstAttemptOnly || e.attempt == 1) && e.t >= from &&
                (!found || e.t < at)) {
                at = e.t;
                found = true;
            }
        return found;
    }
    // The action of `thread`'s last answer ("" when none yet).
    std::string lastAction(int thread) const {
        std::lock_guard<std::mutex> lk(mu_);
        for (auto it = events_.rbegin(); it != events_.rend(); ++it)
            if (it->thread == thread && it->kind == Kind::Answer) return it->action;
        return "";
    }

  private:
    void record(Kind kind, int thread, const Msg& m, int port, const std::string& action = "") {
        std::lock_guard<std::mutex> lk(mu_);
        events_.push_back({Clock::now(), kind, thread, m.attempts, port, action});
    }

    void run(int t) {
        Conn c;
        int port = 0;
        for (long seq = 0; !stop_; ++seq) {
            Msg m;
            m.thread = t;
            m.instance = tag_ + "." + std::to_string(t) + "." + std::to_string(seq);
            m.rcpt = (seq + t) % 4;  // 0..3; 0 counts as one recipient
            m.size = 700 + (seq * 131 + t * 17) % 9000;
            const std::string req = make_(m);
            auto first = Clock::now();
            m.firstSent = first;
            while (!m.answered) {
                if (elapsedMs(first) > giveUpMs_) {
                    record(Kind::GaveUp, t, m, port);
                    break;
                }
                if (c.isOpen() && !c.peerOpen()) {
                    // Closed by the server between two requests.
                    record(Kind::IdleClosed, t, m, port);
                    c.close();
                }
                if (!c.isOpen()) {
                    if (!c.connectTcp(port_)) {
                        record(Kind::ConnectFailed, t, m, 0);
                        std::this_thread::sleep_for(std::chrono::milliseconds(retryMs_));
                        continue;
                    }
                    port = localPort(c.fd());
                    curPort_[static_cast<size_t>(t)] = port;
                }
                ++m.attempts;
                std::string reply;
                Conn::Status st = c.request(req, reply, readMs_);
                if (st == Conn::Status::Ok) {
                    m.answered = true;
                    m.action = itest::actionOf(reply);
                    m.answeredAt = Clock::now();
                    record(Kind::Answer, t, m, port, m.action);
                    ++answered_;
                } else {
                    record(st == Conn::Status::Timeout ? Kind::Hang : Kind::NoReply, t, m, port);
                    c.close();
                    curPort_[static_cast<size_t>(t)] = 0;
                    std::this_thread::sleep_for(std::chrono::milliseconds(retryMs_));
                }
            }
            {
                std::lock_guard<std::mutex> lk(mu_);
                msgs_.push_back(m);
            }
            if (paceMs_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(paceMs_));
        }
    }

    int port_;
    std::string tag_;
    int threads_, paceMs_, readMs_, giveUpMs_, retryMs_;
    Maker make_;
    std::vector<std::atomic<int>> curPort_;
    std::atomic<bool> stop_{false};
    std::atomic<size_t> answered_{0};
    std::vector<std::thread> workers_;
    mutable std::mutex mu_;
    std::vector<Event> events_;
    std::vector<Msg> msgs_;
};

}  // namespace itest
