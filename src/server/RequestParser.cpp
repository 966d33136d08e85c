// The policy protocol parser (see RequestParser.h).
#include "mtpolicyd/server/RequestParser.h"

#include <cstring>

namespace mtp {

void RequestParser::reset() {
    partial_.clear();
    requestBytes_ = 0;
    attributes_ = 0;
    error_.clear();
}

RequestParser::Status RequestParser::line(const char* p, size_t n, Request::Attrs& attrs) {
    if (n > 0 && p[n - 1] == '\r') --n;
    if (n == 0) {
        // Postfix never sends a request without attributes. Answering each empty line would
        // let a client make the worker run its chain, answer and log a request line for every
        // byte it sends.
        if (attributes_ == 0) {
            error_ = "empty request (an empty line before any attribute)";
            return Status::Error;
        }
        return Status::Complete;
    }
    if (std::memchr(p, '\0', n)) {
        error_ = "NUL byte in request line";
        return Status::Error;
    }
    const char* eq = static_cast<const char*>(std::memchr(p, '=', n));
    if (!eq) {
        error_ = "error parsing request: line without '='";
        return Status::Error;
    }
    if (++attributes_ > limits_.maxAttributes) {
        error_ = "too many attributes (max_attributes " + std::to_string(limits_.maxAttributes) + ")";
        return Status::Error;
    }
    std::string name(p, eq - p);
    std::string value(eq + 1, p + n - (eq + 1));
    attrs[std::move(name)] = std::move(value);
    return Status::NeedMore;
}

RequestParser::Status RequestParser::feed(const char* data, size_t len, size_t& consumed,
                                          Request::Attrs& attrs) {
    size_t pos = 0;
    consumed = 0;
    // After an error the stream is out of step (a line was cut short, a limit was hit): it
    // stays an error until reset(), so a caller that feeds on never sees a bogus request.
    if (!error_.empty()) return Status::Error;
    while (pos < len) {
        const char* nl = static_cast<const char*>(std::memchr(data + pos, '\n', len - pos));
        size_t chunk = nl ? static_cast<size_t>(nl - (data + pos)) : len - pos;
        if (requestBytes_ + chunk + (nl ? 1 : 0) > limits_.maxRequestSize) {
            error_ = "request too large (max_request_size " + std::to_string(limits_.maxRequestSize) + ")";
            return Status::Error;
        }
        if (partial_.size() + chunk > limits_.maxLineLength) {
            error_ = "line too long (max_line_length " + std::to_string(limits_.maxLineLength) + ")";
            return Status::Error;
        }
        requestBytes_ += chunk + (nl ? 1 : 0);
        if (!nl) {
            partial_.append(data + pos, chunk);
            pos = len;
            break;
        }
        Status st;
        if (partial_.empty()) {
            st = line(data + pos, chunk, attrs);
        } else {
            partial_.append(data + pos, chunk);
            st = line(partial_.data(), partial_.size(), attrs);
            partial_.clear();
        }
        pos += chunk + 1;
        if (st == Status::Error) {
            consumed = pos;
            return st;
        }
        if (st == Status::Complete) {
            consumed = pos;
            requestBytes_ = 0;
            attributes_ = 0;
            return Status::Complete;
        }
    }
    consumed = pos;
    return Status::NeedMore;
}

}  // namespace mtp
