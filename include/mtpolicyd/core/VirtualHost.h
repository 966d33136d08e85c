// A virtual host: a named plugin chain served on one port (or unix socket path).
#pragma once

#include <string>

#include "mtpolicyd/core/Plugin.h"

namespace mtp {

class VirtualHost {
public:
    std::string name;
    std::string port;   // the listener key: a port number or a unix socket path
    std::string where;  // file:line of its definition
    Chain chain;
};

}  // namespace mtp
