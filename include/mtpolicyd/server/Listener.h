// Listening sockets. The master binds them all before forking; workers inherit the fds.
#pragma once

#include <string>
#include <vector>

#include "mtpolicyd/core/Config.h"

namespace mtp {

struct Listener {
    ListenSpec spec;
    int fd = -1;
    std::string address;  // what was bound, for logs ("127.0.0.1:12345", "[::1]:12345", path)

    const std::string& key() const { return spec.key(); }
};

// Binds every spec (a host name may yield several addresses). Listeners in `reuse` whose spec
// text matches are kept instead of bound again (reload). Throws SystemError/ConfigError; on
// error nothing newly bound is left open.
std::vector<Listener> bindListeners(const std::vector<ListenSpec>& specs, std::vector<Listener>& reuse);
// Closes the listener; removes the socket file of a unix listener when `unlinkSocket`.
void closeListener(Listener& l, bool unlinkSocket);

// Non-blocking and close-on-exec helpers.
void setNonBlocking(int fd);

}  // namespace mtp
