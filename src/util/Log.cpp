// Logging backend. One global destination per process; workers inherit it across fork.
// File lines carry a timestamp, ident and pid (mtpolicyd wrote none; see mtpolicyd(8)).
// On a standard error that is systemd's journal stream, lines start with the syslog priority
// ("<3>", as sd-daemon(3)'s SD_ERR), which journald takes as the message's priority.
#include "mtpolicyd/util/Log.h"

#include <fcntl.h>
#include <syslog.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "mtpolicyd/util/Errors.h"

namespace mtp {
namespace log {

int g_level = Notice;

namespace {

enum class Dest { Stderr, Syslog, File };
Dest g_dest = Dest::Stderr;
std::string g_ident = "mtpolicyd";
std::string g_path;
int g_fd = 2;
int g_journal = -1;  // whether fd 2 is the journal stream: -1 not yet checked, 0 no, 1 yes

const int kPriority[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG};

struct Facility {
    const char* name;
    int code;
};
const Facility kFacilities[] = {
    {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"cron", LOG_CRON},     {"daemon", LOG_DAEMON},
    {"ftp", LOG_FTP},       {"kern", LOG_KERN},         {"lpr", LOG_LPR},       {"mail", LOG_MAIL},
    {"news", LOG_NEWS},     {"syslog", LOG_SYSLOG},     {"user", LOG_USER},     {"uucp", LOG_UUCP},
    {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},     {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
    {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},     {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

// systemd.exec(5): JOURNAL_STREAM is "device:inode" of the stream it connected standard
// output and error to; it is inherited, so it counts only when fd 2 is still that stream.
bool stderrIsJournal() {
    const char* env = std::getenv("JOURNAL_STREAM");
    if (!env || !*env) return false;
    unsigned long long dev = 0, ino = 0;
    char rest;
    if (std::sscanf(env, "%llu:%llu%c", &dev, &ino, &rest) != 2) return false;
    struct stat st;
    if (::fstat(2, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

void closeFile() {
    if (g_dest == Dest::File && g_fd > 2) ::close(g_fd);
    g_fd = 2;
}

}  // namespace

void setLevel(int lvl) {
    if (lvl < 0) lvl = 0;
    if (lvl > 4) lvl = 4;
    g_level = lvl;
}

int facilityByName(const std::string& name) {
    for (const auto& f : kFacilities)
        if (name == f.name) return f.code;
    return -1;
}

void toStderr(const std::string& ident) {
    closeFile();
    if (g_dest == Dest::Syslog) closelog();
    g_ident = ident;
    g_dest = Dest::Stderr;
    g_fd = 2;
    g_journal = stderrIsJournal() ? 1 : 0;
}

void toSyslog(const std::string& ident, const std::string& facility) {
    int code = facilityByName(facility);
    if (code < 0) throw ConfigError("unknown syslog facility '" + facility + "'");
    closeFile();
    g_ident = ident;  // openlog keeps the pointer: g_ident lives for the process
    openlog(g_ident.c_str(), LOG_PID | LOG_NDELAY, code);
    g_dest = Dest::Syslog;
}

void toFile(const std::string& path, const std::string& ident) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) throw SystemError("cannot open log file " + path, errno);
    closeFile();
    if (g_dest == Dest::Syslog) closelog();
    g_ident = ident;
    g_path = path;
    g_fd = fd;
    g_dest = Dest::File;
}

void reopen() {
    if (g_dest != Dest::File) return;
    int fd = ::open(g_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return;  // keep writing to the old file rather than losing messages
    ::dup2(fd, g_fd);
    ::close(fd);
}

std::string escape(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        switch (c) {
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\0': out += "\\0"; break;
            case '\\': out += "\\\\"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\x%02x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out;
}

void write(int lvl, const char* fmt, ...) {
    if (!enabled(lvl)) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    std::string text = escape(std::string(msg, std::min<size_t>(n, sizeof msg - 1)));
    if (g_dest == Dest::Syslog) {
        syslog(kPriority[lvl < 0 ? 0 : (lvl > 4 ? 4 : lvl)], "%s", text.c_str());
        return;
    }
    static const char* kNames[] = {"error", "warning", "notice", "info", "debug"};
    int prio = kPriority[lvl < 0 ? 0 : (lvl > 4 ? 4 : lvl)];
    if (g_dest == Dest::Stderr && g_journal < 0) g_journal = stderrIsJournal() ? 1 : 0;
    char prefix[8] = "";
    if (g_dest == Dest::Stderr && g_journal == 1) std::snprintf(prefix, sizeof prefix, "<%d>", prio);
    char head[128];
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char ts[32];
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(head, sizeof head, "%s%s.%03ld %s[%d]: %s: ", prefix, ts, static_cast<long>(tv.tv_usec / 1000),
                  g_ident.c_str(), static_cast<int>(getpid()), kNames[lvl < 0 ? 0 : (lvl > 4 ? 4 : lvl)]);
    std::string line = head + text + "\n";
    // One write() per line so lines of concurrent workers never interleave.
    ssize_t r = ::write(g_fd, line.data(), line.size());
    (void)r;
}

}  // namespace log
}  // namespace mtp
