// Process-level helpers of the master: logging set-up, daemonizing, pid file, privileges.
#pragma once

#include <string>

#include "mtpolicyd/core/Config.h"

namespace mtp {

struct RunOptions {
    std::string configFile;
    bool foreground = false;
    int logLevel = -1;  // -l; -1 = use the config's log_level
};

// Chooses the log destination: log_file if set, else stderr in the foreground, else syslog.
void setupLogging(const Config& cfg, const RunOptions& opts);
// Forks into the background (setsid, stdio to /dev/null). Only the child returns, with the
// write end of a pipe: the parent waits on it and exits 0 once the child calls
// notifyStarted(fd, ""), or 1 after printing the error the child passed (or if the child died).
int daemonize();
void notifyStarted(int& fd, const std::string& error);
// Tells systemd (Type=notify) about the service state, e.g. "READY=1", when $NOTIFY_SOCKET
// names its socket; does nothing otherwise. See sd_notify(3).
void notifySystemd(const std::string& state);
// Throws when the pid file names a live process (another mtpolicyd is running).
void checkPidFile(const std::string& path);
// Fails when the pid file names a live process; otherwise writes our pid.
void writePidFile(const std::string& path);
void removePidFile(const std::string& path);
// Switches to user/group (from the config). No-op when neither is set. Throws on failure.
void dropPrivileges(const std::string& user, const std::string& group, const std::vector<std::string>& chownPaths);

}  // namespace mtp
