// Process-wide logging: syslog, stderr or an append-only file. Levels follow mtpolicyd:
// 0 err, 1 warning, 2 notice, 3 info, 4 debug. A message is written when its level is
// <= the configured level. Use MTP_LOG so that nothing is formatted when the level is off.
#pragma once

#include <string>

namespace mtp {
namespace log {

enum Level { Err = 0, Warning = 1, Notice = 2, Info = 3, Debug = 4 };

extern int g_level;

inline bool enabled(int lvl) { return lvl <= g_level; }
void setLevel(int lvl);

// Destinations. Each call replaces the previous destination.
void toStderr(const std::string& ident);
void toSyslog(const std::string& ident, const std::string& facility);  // throws ConfigError
void toFile(const std::string& path, const std::string& ident);       // throws SystemError
// Re-open the current destination (log rotation, after fork nothing is needed).
void reopen();
// Returns the syslog facility code for a name, or -1.
int facilityByName(const std::string& name);

void write(int lvl, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Escapes control characters (\n, \r, \0, \\ and \xNN) so one message is one line.
std::string escape(const std::string& s);

}  // namespace log
}  // namespace mtp

#define MTP_LOG(lvl, ...)                                           \
    do {                                                            \
        if (::mtp::log::enabled(lvl)) ::mtp::log::write(lvl, __VA_ARGS__); \
    } while (0)
