// Incremental parser for the Postfix policy delegation protocol: name=value lines, an empty
// line ends a request, "\r\n" tolerated, split on the first '=', the last duplicate wins.
// Limits on line length, attribute count and request size are enforced while reading, so a
// hostile peer never makes the worker buffer more than the limits allow.
#pragma once

#include <cstddef>
#include <string>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/core/Request.h"

namespace mtp {

class RequestParser {
public:
    enum class Status { NeedMore, Complete, Error };

    explicit RequestParser(const Limits& limits) : limits_(limits) {}

    // Consumes bytes from data[0..len). Stops after the blank line that completes a request
    // (Complete, `consumed` tells how far) or at the end of the data (NeedMore). On Error,
    // error() says why and the connection must be closed; every later call returns Error
    // again (consuming nothing) until reset().
    Status feed(const char* data, size_t len, size_t& consumed, Request::Attrs& attrs);

    const std::string& error() const { return error_; }
    // True when part of a request has been received (the request timer is running).
    bool inRequest() const { return requestBytes_ > 0; }
    void reset();

private:
    Status line(const char* p, size_t n, Request::Attrs& attrs);

    Limits limits_;
    std::string partial_;  // an incomplete line carried over between reads
    size_t requestBytes_ = 0;
    size_t attributes_ = 0;
    std::string error_;
};

}  // namespace mtp
