// A private MariaDB server for the integration tests: a datadir in a fresh temp dir made with
// mariadb-install-db, mariadbd listening only on a unix socket in that dir (no TCP), a database
// and a password-protected user for the code under test, and root access over the socket for
// the tests' own set-up and checks.
//
// Ownership: a MariaDb owns its temp dir and the one mariadbd process it started (its child, by
// pid; the child also gets PR_SET_PDEATHSIG so that it dies with the test program). stop() and
// kill() end that process; start() runs it again on the same datadir (outage tests). The
// destructor always stops the server and removes the dir. When the server binaries are missing,
// the constructor throws, so every test that needs the server FAILS with an apt-get hint
// instead of passing silently.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "mtpolicyd/sql/SqlConnection.h"

namespace itest {

class MariaDb {
  public:
    static constexpr const char* kDatabase = "mtpolicyd";
    static constexpr const char* kUser = "mtpolicyd";
    // Characters a DSN parser or a log line could trip over: ';', ':', '=', quotes.
    static constexpr const char* kPassword = "Tr0ub4dor;&3:pw='x'";

    // Creates the temp dir, installs the datadir, starts the server and creates kDatabase and
    // kUser. Throws std::runtime_error (with the server's error log) on any failure.
    MariaDb();
    ~MariaDb();
    MariaDb(const MariaDb&) = delete;
    MariaDb& operator=(const MariaDb&) = delete;

    // Starts mariadbd and waits (up to ~30 s) until root can connect; throws on failure.
    void start();
    // SIGTERM and wait up to `graceMs` for a clean shutdown, then SIGKILL. True when SIGTERM
    // was enough. No-op when not running.
    bool stop(int graceMs = 20000);
    // SIGKILL (a crash, as far as clients and InnoDB are concerned) and reap.
    void kill();
    // The server process is alive (reaps it when it has exited).
    bool running();
    pid_t pid() const { return pid_; }

    const std::string& dir() const { return dir_; }
    std::string socketPath() const { return dir_ + "/mysql.sock"; }
    // dbi:mysql:database=mtpolicyd;mysql_socket=DIR/mysql.sock
    std::string dsn() const;
    // Connection settings for the code under test: dsn(), kUser, kPassword, the given name.
    mtp::SqlSettings settings(const std::string& name = "db") const;

    // Runs one statement as root over the socket (a fresh connection per call, default database
    // kDatabase) and returns the rows as text ("NULL" for NULL). Throws std::runtime_error.
    std::vector<std::vector<std::string>> rootQuery(const std::string& sql,
                                                    const std::string& database = kDatabase);
    void rootExec(const std::string& sql, const std::string& database = kDatabase) {
        rootQuery(sql, database);
    }

    // The last `lines` lines of the server's error log (for failure messages).
    std::string errorLogTail(size_t lines = 20) const;

  private:
    std::vector<std::string> serverArgs() const;
    bool tryRootConnect(std::string* error);

    std::string dir_;
    std::string mariadbd_;
    std::string installDb_;
    pid_t pid_ = -1;
};

// One server shared by every test of a test program: started on first use, stopped at exit.
// If it could not be started, every call throws the same error again (without retrying).
MariaDb& sharedMariaDb();

// The statements of an SQL script: "--" comment lines dropped, split at ';' (sql/mysql.sql
// has no ';' inside a string).
std::vector<std::string> sqlStatements(const std::string& text);

// The connection block of conf/mtpolicyd-mysql.conf, connection "db" on `db`'s socket.
std::string howtoConnection(const MariaDb& db);
// conf/mtpolicyd-mysql.conf's accounting virtual host on @PORT1@ with Quota's `threshold`
// (the shipped file has 1000).
std::string howtoVhost(long long threshold);

// An END-OF-MESSAGE request as Postfix's smtpd_end_of_data_restrictions sends it.
std::string eomRequest(const std::string& instance, const std::string& client, long long rcpt,
                       long long size);

// What Accounting adds for one message.
struct Counters {
    long long count = 0, rcpt = 0, size = 0, sizeRcpt = 0;
    void add(long long recipients, long long bytes) {
        long long r = recipients == 0 ? 1 : recipients;  // no recipients counts as one
        ++count;
        rcpt += r;
        size += bytes;
        sizeRcpt += r * bytes;
    }
    std::string str() const {
        return "count=" + std::to_string(count) + " count_rcpt=" + std::to_string(rcpt) +
               " size=" + std::to_string(size) + " size_rcpt=" + std::to_string(sizeRcpt);
    }
};

}  // namespace itest
