// A private Postfix instance for the end-to-end tests: its own config directory, queue
// directory, data directory and log file in a fresh temp dir; one smtpd on a free port of
// 127.0.0.1 that asks a policy service on 127.0.0.1:<policyPort()> at END-OF-MESSAGE; every
// accepted message goes to the discard transport, so nothing ever leaves the machine. The
// system Postfix (if any) is neither used nor touched: nothing here reads or writes
// /etc/postfix/*.cf or /var/spool/postfix.
//
// Ownership: a Postfix owns its temp dir and the one master(8) process it started (its child,
// by pid). The master makes itself a session and process-group leader and stops its own
// daemons on SIGTERM; stop() sends SIGTERM to the master and then SIGKILLs, by pid, whatever
// of that process group is left. The master gets PR_SET_PDEATHSIG, so it also goes away when
// the test program dies. The destructor always stops it and removes the dir.
//
// Postfix insists on root: the queue directory must be root-owned, its subdirectories owned by
// the postfix user. start() reports a clear error (and the tests FAIL) when not run as root or
// when postfix/swaks are not installed.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace itest {

// One SMTP transaction made with swaks.
struct SmtpResult {
    int exitCode = -1;  // swaks' exit status: 0 accepted, 26 refused after DATA, ...
    bool timedOut = false;
    std::string transcript;  // swaks' stdout and stderr
    std::string queueId;     // from "250 2.0.0 Ok: queued as QID", "" when not accepted

    bool accepted() const { return exitCode == 0 && !queueId.empty(); }
    // The first server reply line swaks flagged as unexpected ("<** 450 4.7.1 ..."), without
    // the "<** " marker; "" when there is none.
    std::string errorReply() const;
    // For failure messages: exit code and transcript.
    std::string describe() const;
};

class Postfix {
  public:
    // Makes the temp dir and picks two free loopback ports (SMTP and policy); writes nothing
    // and starts nothing yet. `extraMainCf` lines are appended to main.cf (later settings win).
    explicit Postfix(std::vector<std::string> extraMainCf = {});
    ~Postfix();  // stop() and remove the temp dir
    Postfix(const Postfix&) = delete;
    Postfix& operator=(const Postfix&) = delete;

    // "" when this process can run a private Postfix (root, postfix and swaks installed),
    // otherwise what is missing and how to get it.
    static std::string missingPrerequisites();

    // Writes main.cf/master.cf, creates the queue with `postfix -c CONFDIR check`, starts
    // master(8) and waits (bounded) until the smtpd answers with a 220 banner. Returns "" or
    // an error text that includes the end of Postfix's log.
    std::string start(int timeoutMs = 30000);
    // SIGTERM to the master, wait up to `graceMs`, then SIGKILL (by pid) the master and what is
    // left of its process group. True when SIGTERM alone was enough.
    bool stop(int graceMs = 10000);
    // The master has been started and has not exited (reaps it when it has).
    bool running();
    pid_t pid() const { return pid_; }

    const std::string& dir() const { return dir_; }
    std::string confDir() const { return dir_ + "/conf"; }
    std::string queueDir() const { return dir_ + "/queue"; }
    std::string maillogPath() const { return dir_ + "/maillog"; }
    int smtpPort() const { return smtpPort_; }
    // The port the smtpd expects the policy service (mtpolicyd) on.
    int policyPort() const { return policyPort_; }

    // Postfix's log (maillog_file, written by postlogd).
    std::string maillog() const;
    size_t maillogSize() const { return maillog().size(); }
    // Waits until the log, from byte `from` on, contains `needle` `count` times.
    bool waitMaillog(const std::string& needle, int timeoutMs, size_t from = 0,
                     size_t count = 1) const;
    // The last `lines` lines of the log from byte `from` on (for failure messages).
    std::string maillogTail(size_t lines = 30, size_t from = 0) const;

    // Sends one message from `from` to `to` through the smtpd with swaks (HELO
    // client.mtp-test, a Subject with `tag`), bounded by `timeoutMs`.
    SmtpResult sendMail(const std::string& from, const std::string& to, const std::string& tag,
                        int timeoutMs = 30000) const;

  private:
    std::string mainCf() const;
    std::string masterCf() const;
    bool smtpBanner(std::string* got) const;

    std::string dir_;
    std::vector<std::string> extraMainCf_;
    int smtpPort_ = 0;
    int policyPort_ = 0;
    std::string postfixBin_, masterBin_, swaksBin_;
    pid_t pid_ = -1;
    bool exited_ = false;
    int status_ = 0;
};

// One Postfix shared by the tests of a suite: started on first use; if it could not be
// started, every later call throws the same error again (without retrying).
Postfix& sharedPostfix();
// Stops and removes the shared Postfix (also done at program exit).
void releaseSharedPostfix();

}  // namespace itest
