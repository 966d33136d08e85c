// SystemError: formats errno into the message once, at the throw site.
#include "mtpolicyd/util/Errors.h"

#include <cstring>

namespace mtp {

SystemError::SystemError(const std::string& what, int err)
    : std::runtime_error(what + ": " + std::strerror(err)), code_(err) {}

}  // namespace mtp
