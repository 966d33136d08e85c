// The master process: binds every port, forks and supervises workers (Net::Server::PreFork
// semantics), reloads on HUP, stops on TERM/INT/QUIT. It never runs a plugin itself.
#pragma once

#include <memory>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/server/Daemon.h"

namespace mtp {

// Runs the daemon with an already loaded configuration; returns the exit status.
int runMaster(std::unique_ptr<Config> config, const RunOptions& opts);

}  // namespace mtp
