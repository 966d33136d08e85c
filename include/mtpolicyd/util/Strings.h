// Small string helpers with no policy knowledge.
#pragma once

#include <cstddef>
#include <ctime>
#include <string>
#include <vector>

namespace mtp {

std::string trim(const std::string& s);
// Splits on commas with optional white space around them (Perl's split /\s*,\s*/), drops
// empty items.
std::vector<std::string> splitList(const std::string& s);
bool startsWith(const std::string& s, const std::string& prefix);
std::string toLower(std::string s);
// Formats a number the way Perl prints it: integers without a decimal point, others with up
// to 15 significant digits ("5", "2.5", "-0.1").
std::string formatNumber(double v);
// Parses a whole string as a number (leading/trailing white space allowed). Returns false if
// the string is not entirely a number.
bool parseNumber(const std::string& s, double& out);
bool parseInteger(const std::string& s, long long& out);
// Replaces the first occurrence of `from` in s with `to` (mtpolicyd's s/// without /g).
void replaceFirst(std::string& s, const std::string& from, const std::string& to);
// strftime(pattern) of `t` in local time (mtpolicyd's Time::Piece->new->strftime).
std::string formatLocalTime(const std::string& pattern, time_t t);
// A libconfig string literal: "..." with \ and " escaped.
std::string quoteString(const std::string& s);
// True when name matches [A-Za-z0-9_]+ (safe to put into SQL as an identifier).
bool isSafeIdentifier(const std::string& name);
// The longest prefix of s of at most maxBytes bytes that does not end inside a UTF-8
// multibyte sequence (it backs off at most 3 bytes, so invalid UTF-8 is cut anyway).
std::string utf8Prefix(const std::string& s, size_t maxBytes);
// The 128-bit FNV-1a hash of s as 32 lowercase hex digits. Not cryptographic, but fixed: the
// same on every platform, in every process and after a restart.
std::string fnv1a128Hex(const std::string& s);
// The length of the longest prefix of s, of at most maxBytes bytes, that is valid UTF-8
// (RFC 3629: no overlong forms, surrogates or code points past U+10FFFF).
size_t validUtf8Length(const std::string& s, size_t maxBytes);
// A key that fits a utf8mb4 column of maxBytes bytes (maxBytes >= 34): s itself when it has at
// most maxBytes bytes and is valid UTF-8; otherwise its longest valid UTF-8 prefix of at most
// min(200, maxBytes - 33) bytes, "~" and fnv1a128Hex(s)
// (of the WHOLE value). Deterministic, so every writer and reader of a row (Accounting and
// Quota, any worker, any restart) turns a long value into the same key, and two long values
// share a key only through a hash collision. With maxBytes 255: at most 233 bytes.
std::string fitKey(const std::string& s, size_t maxBytes);

}  // namespace mtp
