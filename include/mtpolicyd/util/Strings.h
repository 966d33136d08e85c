// Small string helpers with no policy knowledge.
#pragma once

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

}  // namespace mtp
