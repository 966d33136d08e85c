// A private, loopback-only Postfix for the end-to-end tests (see PostfixFixture.h): config and
// queue in a temp dir, master(8) started as a child of the test program and stopped by pid,
// swaks as the SMTP client.
#include "PostfixFixture.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "DaemonFixture.h"

namespace itest {

namespace {

const char* const kInstallHint =
    "install them with: echo 'postfix postfix/main_mailer_type select No configuration' | "
    "debconf-set-selections; DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends postfix swaks (with a policy-rc.d that exits 101, so that the "
    "system Postfix is not started)";

bool isExecutable(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

// `name` in $PATH or in the sbin directories (which a non-login root shell may lack);
// "" when not found.
std::string findProgram(const std::string& name) {
    std::string path = "/usr/local/sbin:/usr/sbin:/sbin";
    if (const char* env = std::getenv("PATH")) path = std::string(env) + ":" + path;
    std::istringstream in(path);
    std::string d;
    while (std::getline(in, d, ':')) {
        if (d.empty()) continue;
        std::string p = d + "/" + name;
        if (isExecutable(p)) return p;
    }
    return "";
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

// A base for the temp dir that the unprivileged Postfix daemons can reach: $TMPDIR when it is
// short (unix socket paths inside the queue are limited to 108 bytes) and every directory on
// the way is searchable by others, else /tmp.
std::string tempBase() {
    const char* env = std::getenv("TMPDIR");
    if (!env || !*env || env[0] != '/' || std::strlen(env) >= 60) return "/tmp";
    std::string base = env;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    for (std::string p = base; !p.empty(); p = p.substr(0, p.rfind('/'))) {
        struct stat st;
        if (::stat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || !(st.st_mode & S_IXOTH))
            return "/tmp";
        if (p.rfind('/') == 0) break;
    }
    return base;
}

}  // namespace

// --- SmtpResult ---------------------------------------------------------------------------

std::string SmtpResult::errorReply() const {
    size_t pos = transcript.find("<** ");
    if (pos == std::string::npos) return "";
    size_t end = transcript.find('\n', pos);
    return trim(transcript.substr(pos + 4, end == std::string::npos ? end : end - pos - 4));
}

std::string SmtpResult::describe() const {
    std::ostringstream s;
    s << "swaks exit " << exitCode << (timedOut ? " (timed out)" : "") << ", transcript:\n"
      << transcript;
    return s.str();
}

// --- Postfix ------------------------------------------------------------------------------

Postfix::Postfix(std::vector<std::string> extraMainCf) : extraMainCf_(std::move(extraMainCf)) {
    std::string templ = tempBase() + "/mtpolicyd-pfx.XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data()))
        throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    dir_ = buf.data();
    // The Postfix daemons run as the postfix user and must be able to reach the queue.
    ::chmod(dir_.c_str(), 0755);
    smtpPort_ = freeTcpPort();
    do {
        policyPort_ = freeTcpPort();
    } while (policyPort_ == smtpPort_);
}

Postfix::~Postfix() {
    stop(5000);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

std::string Postfix::missingPrerequisites() {
    if (::geteuid() != 0)
        return "the Postfix end-to-end tests must run as root: Postfix insists on a root-owned "
               "queue directory with postfix-owned subdirectories (euid is " +
               std::to_string(::geteuid()) + ")";
    std::string missing;
    for (const char* p : {"postfix", "postconf", "swaks"})
        if (findProgram(p).empty()) missing += std::string(missing.empty() ? "" : ", ") + p;
    if (!missing.empty()) return "not installed: " + missing + "; " + kInstallHint;
    return "";
}

std::string Postfix::mainCf() const {
    std::ostringstream s;
    s << "# Written by the mtpolicyd integration tests (tests/integration/PostfixFixture.cpp):\n"
         "# a private Postfix on 127.0.0.1 that discards every message it accepts.\n"
         "compatibility_level = 3.6\n"
         "queue_directory = "
      << dir_ << "/queue\n"
      << "data_directory = " << dir_ << "/data\n"
      << "maillog_file = " << maillogPath() << "\n"
      << "maillog_file_prefixes = " << dir_ << "\n"
      << "inet_interfaces = 127.0.0.1\n"
         "inet_protocols = ipv4\n"
         "myhostname = mtp-test.localdomain\n"
         "mydomain = localdomain\n"
         "myorigin = $myhostname\n"
         "mydestination =\n"
         "mynetworks = 127.0.0.0/8\n"
         "relay_domains = example.net\n"
         "relayhost =\n"
         "smtpd_relay_restrictions = permit_mynetworks, reject\n"
         "# Nothing is ever delivered anywhere.\n"
         "default_transport = discard\n"
         "relay_transport = discard\n"
         "local_transport = discard\n"
         "virtual_transport = discard\n"
         "alias_maps =\n"
         "alias_database =\n"
         "biff = no\n"
         "smtpd_banner = $myhostname ESMTP mtpolicyd-test\n"
         "# The wiring mtpolicyd's quota how-to asks for: one policy request per message, at\n"
         "# END-OF-MESSAGE (size and recipient_count are final there).\n"
         "smtpd_end_of_data_restrictions = check_policy_service inet:127.0.0.1:"
      << policyPort_ << "\n"
      << "# A hung policy service must not stall the tests for Postfix's default 100s.\n"
         "smtpd_policy_service_timeout = 10s\n"
         "# smtpd_policy_service_default_action is left at Postfix's default,\n"
         "# \"451 4.3.5 Server configuration problem\".\n";
    for (const auto& l : extraMainCf_) s << l << "\n";
    return s.str();
}

std::string Postfix::masterCf() const {
    // The Debian master.cf services that a discard-only instance uses, none chrooted (a chroot
    // would need copies of /etc files in the temp queue), the smtpd on our own port.
    std::ostringstream s;
    s << "# service type  private unpriv  chroot  wakeup  maxproc command\n"
      << "127.0.0.1:" << smtpPort_ << " inet n - n - - smtpd\n"
      << "pickup    unix  n       -       n       60      1       pickup\n"
         "cleanup   unix  n       -       n       -       0       cleanup\n"
         "qmgr      unix  n       -       n       300     1       qmgr\n"
         "rewrite   unix  -       -       n       -       -       trivial-rewrite\n"
         "bounce    unix  -       -       n       -       0       bounce\n"
         "defer     unix  -       -       n       -       0       bounce\n"
         "trace     unix  -       -       n       -       0       bounce\n"
         "verify    unix  -       -       n       -       1       verify\n"
         "flush     unix  n       -       n       1000?   0       flush\n"
         "proxymap  unix  -       -       n       -       -       proxymap\n"
         "proxywrite unix -       -       n       -       1       proxymap\n"
         "showq     unix  n       -       n       -       -       showq\n"
         "error     unix  -       -       n       -       -       error\n"
         "retry     unix  -       -       n       -       -       error\n"
         "discard   unix  -       -       n       -       -       discard\n"
         "anvil     unix  -       -       n       -       1       anvil\n"
         "scache    unix  -       -       n       -       1       scache\n"
         "postlog   unix-dgram n  -       n       -       1       postlogd\n";
    return s.str();
}

std::string Postfix::start(int timeoutMs) {
    if (pid_ > 0 && running()) return "postfix already started";
    std::string missing = missingPrerequisites();
    if (!missing.empty()) return missing;
    postfixBin_ = findProgram("postfix");
    swaksBin_ = findProgram("swaks");
    auto t0 = Clock::now();

    // postconf -d: the compiled-in default, without reading the (possibly absent)
    // /etc/postfix/main.cf.
    CommandResult dd =
        runCommand({findProgram("postconf"), "-d", "-h", "daemon_directory"}, "", 10000);
    masterBin_ = trim(dd.out) + "/master";
    if (dd.exitCode != 0 || !isExecutable(masterBin_))
        return "cannot find Postfix's master(8) (postconf -d -h daemon_directory: '" +
               trim(dd.out) + "', " + trim(dd.err) + ")";

    try {
        std::filesystem::create_directories(confDir());
        writeFile(confDir() + "/main.cf", mainCf());
        writeFile(confDir() + "/master.cf", masterCf());
    } catch (const std::exception& e) {
        return std::string("writing the Postfix configuration: ") + e.what();
    }
    // The queue directory itself must exist and belong to root; `postfix check` creates the
    // postfix-owned subdirectories and data_directory (post-install create-missing).
    if (::mkdir(queueDir().c_str(), 0755) != 0 && errno != EEXIST)
        return "mkdir " + queueDir() + ": " + std::strerror(errno);
    CommandResult chk = runCommand({postfixBin_, "-c", confDir(), "check"}, "", 60000);
    if (chk.exitCode != 0)
        return "postfix -c " + confDir() + " check failed (exit " + std::to_string(chk.exitCode) +
               "): " + chk.out + chk.err + "\nmaillog:\n" + maillogTail();

    std::string outPath = dir_ + "/master.out";
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return "fork: " + std::string(std::strerror(errno));
    if (pid == 0) {
        // The master makes itself a session leader (its own process group, which it signals
        // when it stops). If the test program dies, the master gets SIGTERM.
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent) _exit(126);
        int null = ::open("/dev/null", O_RDONLY);
        int out = ::open(outPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (null >= 0) dup2(null, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD}) ::signal(s, SIG_DFL);
        execl(masterBin_.c_str(), masterBin_.c_str(), "-c", confDir().c_str(),
              static_cast<char*>(nullptr));
        dprintf(2, "exec %s: %s\n", masterBin_.c_str(), std::strerror(errno));
        _exit(127);
    }
    pid_ = pid;
    exited_ = false;
    status_ = 0;

    auto deadline = t0 + std::chrono::milliseconds(timeoutMs);
    std::string banner;
    while (Clock::now() < deadline) {
        if (!running())
            return "postfix master exited during start-up (status " + std::to_string(status_) +
                   "); " + readFile(outPath) + "\nmaillog:\n" + maillogTail();
        if (smtpBanner(&banner)) return "";
        sleepMs(50);
    }
    std::string err = "postfix smtpd on 127.0.0.1:" + std::to_string(smtpPort_) +
                      " did not greet within " + std::to_string(timeoutMs) + " ms (last: '" +
                      banner + "'); " + readFile(outPath) + "\nmaillog:\n" + maillogTail();
    stop(2000);
    return err;
}

bool Postfix::smtpBanner(std::string* got) const {
    Conn c;
    if (!c.connectTcp(smtpPort_)) return false;
    std::string data;
    auto deadline = Clock::now() + std::chrono::milliseconds(3000);
    while (data.find('\n') == std::string::npos && Clock::now() < deadline) {
        pollfd p{c.fd(), POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        char buf[512];
        ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
        if (n > 0) {
            data.append(buf, static_cast<size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            break;
        }
    }
    if (got) *got = trim(data);
    bool ok = data.compare(0, 4, "220 ") == 0;
    if (ok) c.send("QUIT\r\n", 500);
    return ok;
}

bool Postfix::running() {
    if (pid_ <= 0 || exited_) return false;
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
        exited_ = true;
        status_ = st;
        return false;
    }
    return r == 0;
}

bool Postfix::stop(int graceMs) {
    if (pid_ <= 0) return true;
    bool clean = true;
    if (running()) {
        // master(8) passes SIGTERM on to its process group and exits.
        ::kill(pid_, SIGTERM);
        if (!waitFor([&] { return !running(); }, graceMs, 10)) {
            clean = false;
            for (pid_t p : processGroupMembers(pid_)) ::kill(p, SIGKILL);
            ::kill(pid_, SIGKILL);
            waitFor([&] { return !running(); }, 2000, 10);
        }
    }
    // Daemons still finishing after their master left get a moment, then SIGKILL by pid.
    if (!waitFor([&] { return processGroupMembers(pid_).empty(); }, 2000)) {
        clean = false;
        for (pid_t p : processGroupMembers(pid_)) ::kill(p, SIGKILL);
        waitFor([&] { return processGroupMembers(pid_).empty(); }, 2000);
    }
    pid_ = -1;
    return clean;
}

std::string Postfix::maillog() const { return readFile(maillogPath()); }

bool Postfix::waitMaillog(const std::string& needle, int timeoutMs, size_t from,
                          size_t count) const {
    return waitFor(
        [&] {
            std::string l = maillog();
            return l.size() > from && countOf(l.substr(from), needle) >= count;
        },
        timeoutMs);
}

std::string Postfix::maillogTail(size_t lines, size_t from) const {
    std::string l = maillog();
    if (from > l.size()) from = l.size();
    std::istringstream in(l.substr(from));
    std::vector<std::string> all;
    std::string line;
    while (std::getline(in, line)) all.push_back(line);
    std::string out;
    for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
        out += all[i] + "\n";
    return out;
}

SmtpResult Postfix::sendMail(const std::string& from, const std::string& to, const std::string& tag,
                             int timeoutMs) const {
    std::string swaks = swaksBin_.empty() ? findProgram("swaks") : swaksBin_;
    SmtpResult r;
    if (swaks.empty()) {
        r.transcript = "swaks not found; " + std::string(kInstallHint);
        return r;
    }
    CommandResult c =
        runCommand({swaks, "--server", "127.0.0.1", "--port", std::to_string(smtpPort_), "--from",
                    from, "--to", to, "--helo", "client.mtp-test", "--header",
                    "Subject: mtpolicyd test " + tag, "--timeout", "20"},
                   "", timeoutMs);
    r.exitCode = c.exitCode;
    r.timedOut = c.timedOut;
    r.transcript = c.out + c.err;
    const std::string marker = "Ok: queued as ";
    size_t pos = r.transcript.find(marker);
    if (pos != std::string::npos) {
        size_t b = pos + marker.size(), e = b;
        while (e < r.transcript.size() && std::isalnum(static_cast<unsigned char>(r.transcript[e])))
            ++e;
        r.queueId = r.transcript.substr(b, e - b);
    }
    return r;
}

// --- the shared instance ------------------------------------------------------------------

namespace {
std::unique_ptr<Postfix> g_shared;  // destroyed (stopped) at program exit at the latest
std::string g_failure;
}  // namespace

Postfix& sharedPostfix() {
    if (g_shared) return *g_shared;
    if (!g_failure.empty()) throw std::runtime_error(g_failure);
    try {
        auto p = std::make_unique<Postfix>();
        std::string err = p->start();
        if (!err.empty()) throw std::runtime_error(err);
        g_shared = std::move(p);
    } catch (const std::exception& e) {
        g_failure = e.what();
        throw;
    }
    return *g_shared;
}

void releaseSharedPostfix() {
    g_shared.reset();
    g_failure.clear();
}

}  // namespace itest
