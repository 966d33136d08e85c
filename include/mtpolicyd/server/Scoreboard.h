// The shared-memory scoreboard: one slot per worker, written by the worker (state, counters)
// and read by the master to keep the number of idle workers between min_spare_servers and
// max_spare_servers. Slots are plain atomics in an anonymous MAP_SHARED mapping created before
// the first fork.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mtp {

enum class WorkerState : uint8_t { Free = 0, Starting, Idle, Busy, Draining };

struct ScoreSlot {
    std::atomic<int32_t> pid;
    std::atomic<uint8_t> state;
    std::atomic<uint64_t> requests;     // requests answered
    std::atomic<uint64_t> connections;  // connections accepted
    std::atomic<uint32_t> open;         // connections currently open
    std::atomic<uint8_t> accepting;     // 1 while the worker can take new connections
    std::atomic<uint32_t> busySince;    // monotonic milliseconds when the running chain started
    std::atomic<uint32_t> heartbeat;    // monotonic milliseconds, refreshed by the worker's loop

    void set(WorkerState s) { state.store(static_cast<uint8_t>(s), std::memory_order_relaxed); }
    WorkerState get() const { return static_cast<WorkerState>(state.load(std::memory_order_relaxed)); }
};

class Scoreboard {
public:
    static constexpr size_t kSlots = 1024;  // max_servers is limited to this

    Scoreboard();
    ~Scoreboard();
    Scoreboard(const Scoreboard&) = delete;
    Scoreboard& operator=(const Scoreboard&) = delete;

    // A free slot, reset, or -1 when all are taken.
    int allocate();
    void release(int index);
    ScoreSlot& slot(int index) { return slots_[index]; }
    // One past the highest slot ever allocated: readers scan [0, span()).
    size_t span() const { return header_->span.load(std::memory_order_relaxed); }

private:
    struct Header {
        std::atomic<uint32_t> span;
    };
    void* map_;
    Header* header_;
    ScoreSlot* slots_;
};

// Connection placement between workers (least connections). A worker keeps out of the way
// of the others while one of them could take a connection and holds fewer: it then neither
// accepts nor keeps a surplus keep-alive connection.
struct Placement {
    // A worker that has been running one chain for longer than this is not counted on to
    // accept soon.
    static constexpr uint32_t kBusyGraceMs = 50;
    // A worker refreshes its heartbeat every kHeartbeatMs; one silent for longer than
    // kStaleMs (stopped, stalled, swapped out) is not counted on either.
    static constexpr uint32_t kHeartbeatMs = 250;
    static constexpr uint32_t kStaleMs = 1000;
    // The fewest open connections of the other workers that can take connections and are
    // idle or only just busy, or -1 when there is none. `nowMs`: monotonic milliseconds.
    static long fewestElsewhere(Scoreboard& board, const ScoreSlot& self, uint32_t nowMs);
    static uint32_t nowMs();
};

}  // namespace mtp
