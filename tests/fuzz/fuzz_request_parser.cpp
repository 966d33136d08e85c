// libFuzzer target: mtp::RequestParser, the incremental reader of the Postfix policy protocol.
//
// The input is the byte stream a client sends. It is fed in several chunkings derived from the
// input itself (all at once, one byte at a time for short inputs, and two pseudo-random
// splittings seeded by a hash of the input), with the default limits and with small limits
// (also derived from the input). For every feed the target checks:
//   - no crash / sanitizer report, `consumed` <= the bytes offered, NeedMore consumes
//     everything, Complete stops right after a '\n';
//   - a completed request has at most max_attributes attributes, no name or value contains
//     '\n' or NUL, no name contains '=', and the request took at most max_request_size bytes;
//   - Error is sticky: once feed() returned Error, every later feed() returns Error too, until
//     reset();
//   - the requests completed and the final state (error or not, inRequest) do not depend on
//     how the stream was split, and match a simple reference model of the protocol.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mtpolicyd/server/RequestParser.h"

using mtp::Limits;
using mtp::Request;
using mtp::RequestParser;
using Status = RequestParser::Status;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_request_parser: invariant violated: %s\n", what);
    std::abort();
}
#define CHECK(cond)                          \
    do {                                     \
        if (!(cond)) fail(#cond);            \
    } while (0)

struct Outcome {
    std::vector<Request::Attrs> requests;  // completed requests, in order
    bool error = false;
    bool inRequest = false;  // at the end, when no error
    bool operator==(const Outcome& o) const {
        return requests == o.requests && error == o.error && (error || inRequest == o.inRequest);
    }
};

// xorshift64*: the pseudo-random splitter.
struct Rng {
    uint64_t s;
    uint64_t next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 2685821657736338717ULL;
    }
};

uint64_t fnv1a(const uint8_t* d, size_t n, uint64_t salt) {
    uint64_t h = 1469598103934665603ULL ^ salt;
    for (size_t i = 0; i < n; ++i) {
        h ^= d[i];
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

// The protocol as a few obvious lines over the whole stream.
Outcome model(const Limits& lim, const char* data, size_t len) {
    Outcome out;
    Request::Attrs attrs;
    size_t reqBytes = 0, nattrs = 0, pos = 0;
    while (pos < len) {
        const char* nl = static_cast<const char*>(std::memchr(data + pos, '\n', len - pos));
        size_t n = nl ? static_cast<size_t>(nl - (data + pos)) : len - pos;
        if (reqBytes + n + (nl ? 1 : 0) > lim.maxRequestSize || n > lim.maxLineLength) {
            out.error = true;
            return out;
        }
        reqBytes += n + (nl ? 1 : 0);
        if (!nl) break;
        std::string line(data + pos, n);
        pos += n + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) {
            // An empty line before any attribute is an error, not an empty request (Postfix
            // never sends one; a client must not make the worker answer every newline).
            if (nattrs == 0) {
                out.error = true;
                return out;
            }
            out.requests.push_back(std::move(attrs));
            attrs.clear();
            reqBytes = nattrs = 0;
            continue;
        }
        size_t eq = line.find('=');
        if (line.find('\0') != std::string::npos || eq == std::string::npos || ++nattrs > lim.maxAttributes) {
            out.error = true;
            return out;
        }
        attrs[line.substr(0, eq)] = line.substr(eq + 1);
    }
    out.inRequest = reqBytes > 0;
    return out;
}

// Feeds `data` in the given chunk sizes (the sum covers data), driving the parser the way the
// worker does: after Complete the rest of the same chunk is fed again.
Outcome run(const Limits& lim, const char* data, size_t len, const std::vector<size_t>& chunks) {
    RequestParser p(lim);
    Outcome out;
    Request::Attrs attrs;
    size_t requestBytes = 0;  // bytes consumed for the request in progress
    size_t off = 0;
    for (size_t c : chunks) {
        const char* buf = data + off;
        size_t n = c;
        off += c;
        size_t pos = 0;
        // An empty feed is legal and changes nothing.
        if (n == 0) {
            size_t consumed = 12345;
            Status st = p.feed(buf, 0, consumed, attrs);
            CHECK(consumed == 0);
            if (out.error) CHECK(st == Status::Error);
            else CHECK(st == Status::NeedMore);
            continue;
        }
        while (pos < n) {
            size_t consumed = 12345;
            Status st = p.feed(buf + pos, n - pos, consumed, attrs);
            if (out.error) {
                // Sticky: nothing more is parsed after an error.
                CHECK(st == Status::Error);
                CHECK(!p.error().empty());
                break;
            }
            CHECK(consumed <= n - pos);
            requestBytes += consumed;
            if (st == Status::Error) {
                CHECK(!p.error().empty());
                out.error = true;
                break;
            }
            CHECK(p.error().empty());
            if (st == Status::NeedMore) {
                CHECK(consumed == n - pos);
                CHECK(p.inRequest() == (requestBytes > 0));
                pos = n;
                break;
            }
            CHECK(st == Status::Complete);
            CHECK(consumed > 0);
            CHECK(buf[pos + consumed - 1] == '\n');
            CHECK(requestBytes <= lim.maxRequestSize);
            CHECK(!p.inRequest());
            CHECK(attrs.size() <= lim.maxAttributes);
            for (const auto& kv : attrs) {
                CHECK(kv.first.find('\n') == std::string::npos);
                CHECK(kv.second.find('\n') == std::string::npos);
                CHECK(kv.first.find('\0') == std::string::npos);
                CHECK(kv.second.find('\0') == std::string::npos);
                CHECK(kv.first.find('=') == std::string::npos);
                CHECK(kv.first.size() + kv.second.size() + 1 <= lim.maxLineLength);
            }
            out.requests.push_back(std::move(attrs));
            attrs.clear();
            requestBytes = 0;
            pos += consumed;
        }
        if (out.error) {
            // Still an error with more data, and with none.
            size_t consumed = 0;
            CHECK(p.feed("a=b\n\n", 5, consumed, attrs) == Status::Error);
            CHECK(p.feed(buf, 0, consumed, attrs) == Status::Error);
            break;
        }
    }
    if (!out.error) {
        CHECK(p.inRequest() == (requestBytes > 0));
        out.inRequest = p.inRequest();
    }
    // reset() makes the parser as good as new.
    p.reset();
    CHECK(!p.inRequest());
    CHECK(p.error().empty());
    Request::Attrs fresh;
    size_t consumed = 0;
    Status st = p.feed("a=b\n\n", 5, consumed, fresh);
    if (model(lim, "a=b\n\n", 5).error) {
        CHECK(st == Status::Error);
    } else {
        CHECK(st == Status::Complete);
        CHECK(consumed == 5 && fresh.size() == 1 && fresh["a"] == "b");
    }
    return out;
}

std::vector<size_t> whole(size_t len) { return {len}; }

std::vector<size_t> bytewise(size_t len) { return std::vector<size_t>(len, 1); }

std::vector<size_t> randomSplit(size_t len, uint64_t seed, bool withEmpty) {
    Rng r{seed};
    std::vector<size_t> v;
    size_t left = len;
    while (left > 0) {
        uint64_t x = r.next();
        size_t c;
        switch (x & 3) {
            case 0: c = 1 + (x >> 8) % 3; break;       // tiny pieces
            case 1: c = 1 + (x >> 8) % 64; break;      // small pieces
            case 2: c = 1 + (x >> 8) % 4096; break;    // large pieces (a recv() of 4 KB)
            default: c = withEmpty && ((x >> 8) & 7) == 0 ? 0 : 1 + (x >> 8) % 17; break;
        }
        if (c > left) c = left;
        v.push_back(c);
        left -= c;
    }
    return v;
}

Limits smallLimits(uint64_t h) {
    Limits l;
    switch (h & 3) {
        case 0:  // the smallest a configuration accepts
            l.maxLineLength = 64;
            l.maxAttributes = 8;
            l.maxRequestSize = 256;
            break;
        case 1:  // tiny, below what the configuration accepts (the parser must not care)
            l.maxLineLength = (h >> 8) % 8;
            l.maxAttributes = (h >> 16) % 4;
            l.maxRequestSize = (h >> 24) % 16;
            break;
        default:  // anything small
            l.maxLineLength = (h >> 8) % 300;
            l.maxAttributes = (h >> 20) % 40;
            l.maxRequestSize = (h >> 32) % 2048;
            break;
    }
    return l;
}

std::string describe(const Outcome& o) {
    std::string s = std::to_string(o.requests.size()) + " requests (attributes:";
    for (const auto& r : o.requests) s += " " + std::to_string(r.size());
    s += std::string("), ") + (o.error ? "error" : o.inRequest ? "in a request" : "idle");
    return s;
}

void compare(const char* how, const Limits& lim, const Outcome& got, const Outcome& expected) {
    if (got == expected) return;
    std::fprintf(stderr,
                 "fuzz_request_parser: %s: limits line %zu, attributes %zu, size %zu:\n"
                 "  parser: %s\n  model:  %s\n",
                 how, lim.maxLineLength, lim.maxAttributes, lim.maxRequestSize, describe(got).c_str(),
                 describe(expected).c_str());
    fail("the parser and the reference model disagree");
}

void check(const Limits& lim, const char* data, size_t len, uint64_t h) {
    Outcome expected = model(lim, data, len);
    compare("whole buffer", lim, run(lim, data, len, whole(len)), expected);
    if (len <= 2048) compare("one byte at a time", lim, run(lim, data, len, bytewise(len)), expected);
    compare("random split", lim, run(lim, data, len, randomSplit(len, h, false)), expected);
    compare("random split with empty feeds", lim, run(lim, data, len, randomSplit(len, h * 31 + 7, true)),
            expected);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const char* d = reinterpret_cast<const char*>(data);
    uint64_t h = fnv1a(data, size, 0);
    check(Limits(), d, size, h);                         // the defaults of the configuration
    check(smallLimits(h >> 3), d, size, h ^ 0x9e3779b97f4a7c15ULL);
    return 0;
}
