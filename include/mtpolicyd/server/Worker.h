// A worker process: one libevent loop that accepts on every listening socket, keeps any
// number of keep-alive connections, parses requests and runs the virtual host's chain.
#pragma once

#include <vector>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/server/Listener.h"
#include "mtpolicyd/server/Scoreboard.h"

namespace mtp {

// Runs a worker until it is told to stop (SIGTERM/SIGINT/SIGQUIT) or has accepted
// max_requests connections and drained them. Called in the child right after fork; returns
// the exit status for _exit().
int runWorker(Config& config, const std::vector<Listener>& listeners, Scoreboard& board, ScoreSlot& slot);

}  // namespace mtp
