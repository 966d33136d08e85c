// String helpers (see Strings.h).
#include "mtpolicyd/util/Strings.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace mtp {

std::string trim(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

std::vector<std::string> splitList(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        size_t comma = s.find(',', start);
        if (comma == std::string::npos) comma = s.size();
        std::string item = trim(s.substr(start, comma - start));
        if (!item.empty()) out.push_back(item);
        start = comma + 1;
    }
    return out;
}

bool startsWith(const std::string& s, const std::string& prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

std::string toLower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string formatNumber(double v) {
    char buf[64];
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
        std::snprintf(buf, sizeof buf, "%.0f", v);
    else
        std::snprintf(buf, sizeof buf, "%.15g", v);
    std::string s(buf);
    if (s == "-0") s = "0";
    return s;
}

bool parseNumber(const std::string& s, double& out) {
    std::string t = trim(s);
    if (t.empty()) return false;
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(t.c_str(), &end);
    if (errno != 0 || end != t.c_str() + t.size() || !std::isfinite(v)) return false;
    out = v;
    return true;
}

bool parseInteger(const std::string& s, long long& out) {
    std::string t = trim(s);
    if (t.empty()) return false;
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(t.c_str(), &end, 10);
    if (errno != 0 || end != t.c_str() + t.size()) return false;
    out = v;
    return true;
}

void replaceFirst(std::string& s, const std::string& from, const std::string& to) {
    size_t pos = s.find(from);
    if (pos != std::string::npos) s.replace(pos, from.size(), to);
}

std::string formatLocalTime(const std::string& pattern, time_t t) {
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, pattern.c_str(), &tm);
    return std::string(buf, n);
}

std::string quoteString(const std::string& v) {
    std::string out = "\"";
    for (char c : v) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

bool isSafeIdentifier(const std::string& name) {
    if (name.empty()) return false;
    for (unsigned char c : name)
        if (!(std::isalnum(c) || c == '_')) return false;
    return true;
}

size_t validUtf8Length(const std::string& s, size_t maxBytes) {
    const size_t n = std::min(s.size(), maxBytes);
    size_t i = 0;
    while (i < n) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        size_t len;
        uint32_t cp;
        if (c < 0x80) { ++i; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else break;  // a continuation byte, an overlong lead (C0, C1) or beyond U+10FFFF
        if (i + len > n) break;
        bool ok = true;
        for (size_t k = 1; k < len; ++k) {
            const unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) { ok = false; break; }
            cp = (cp << 6) | (cc & 0x3F);
        }
        // No overlong forms, no surrogates, nothing past U+10FFFF.
        if (!ok || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            break;
        i += len;
    }
    return i;
}

std::string utf8Prefix(const std::string& s, size_t maxBytes) {
    if (s.size() <= maxBytes) return s;
    size_t cut = maxBytes;
    // s[cut] is the first byte left out: while it continues a sequence (10xxxxxx), that
    // sequence started inside the prefix, so leave it out as a whole.
    for (int i = 0; i < 3 && cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80; ++i)
        --cut;
    return s.substr(0, cut);
}

std::string fnv1a128Hex(const std::string& s) {
    // FNV-1a with the 128-bit offset basis and prime 2^88 + 0x13B, in two 64-bit halves
    // (no __int128, which 32-bit targets lack).
    uint64_t hi = 0x6c62272e07bb0142ULL, lo = 0x62b821756295c58dULL;
    for (unsigned char c : s) {
        lo ^= c;
        // (hi, lo) * (2^88 + 0x13B) mod 2^128 = (hi, lo) * 0x13B + (lo << 88)
        uint64_t p0 = (lo & 0xFFFFFFFFULL) * 0x13B;
        uint64_t p1 = (lo >> 32) * 0x13B + (p0 >> 32);
        uint64_t newLo = (p1 << 32) | (p0 & 0xFFFFFFFFULL);
        hi = hi * 0x13B + (p1 >> 32) + (lo << 24);
        lo = newLo;
    }
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(hi),
                  static_cast<unsigned long long>(lo));
    return std::string(buf, 32);
}

std::string fitKey(const std::string& s, size_t maxBytes) {
    if (s.size() <= maxBytes && validUtf8Length(s, s.size()) == s.size()) return s;
    size_t keep = maxBytes > 33 ? std::min<size_t>(200, maxBytes - 33) : 0;
    // The prefix is valid UTF-8 (a utf8mb4 column refuses anything else): it ends before the
    // first invalid byte or a sequence cut by the length limit.
    std::string out = s.substr(0, validUtf8Length(s, keep)) + "~" + fnv1a128Hex(s);
    if (out.size() > maxBytes) out.resize(maxBytes);  // only below the documented minimum
    return out;
}

}  // namespace mtp
