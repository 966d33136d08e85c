// The private MariaDB server of the integration tests (see MariaDbFixture.h): finding the
// binaries, mariadb-install-db into a temp dir, mariadbd on a unix socket only, root access
// through MariaDB Connector/C, and stopping the server by pid.
#include "MariaDbFixture.h"

#include <fcntl.h>
#include <mysql.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "DaemonFixture.h"

namespace itest {

using namespace std::string_literals;

namespace {

const char* kInstallHint =
    "the MariaDB server is needed for these tests: apt-get install mariadb-server";

// The first executable among `names`, looked up in $PATH and then in the sbin directories
// that a non-root PATH often lacks.
std::string findProgram(const std::vector<std::string>& names) {
    std::vector<std::string> dirs;
    if (const char* path = std::getenv("PATH")) {
        std::stringstream ss(path);
        std::string d;
        while (std::getline(ss, d, ':'))
            if (!d.empty()) dirs.push_back(d);
    }
    for (const char* d : {"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"})
        dirs.push_back(d);
    for (const auto& name : names)
        for (const auto& d : dirs) {
            std::string p = d + "/" + name;
            if (::access(p.c_str(), X_OK) == 0) return p;
        }
    return "";
}

std::string currentUser() {
    struct passwd* pw = getpwuid(geteuid());
    return pw ? pw->pw_name : "root";
}

// An SQL string literal. Doubling quotes is correct whatever NO_BACKSLASH_ESCAPES says; the
// strings quoted here contain no backslashes.
std::string sqlQuote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += (c == '\'') ? std::string("''") : std::string(1, c);
    return out + "'";
}

struct MysqlCloser {
    void operator()(MYSQL* m) const noexcept { mysql_close(m); }
};
struct ResultFreer {
    void operator()(MYSQL_RES* r) const noexcept { mysql_free_result(r); }
};
using MysqlPtr = std::unique_ptr<MYSQL, MysqlCloser>;
using ResultPtr = std::unique_ptr<MYSQL_RES, ResultFreer>;

// A root session over the socket; null (with *error set) when the server does not answer.
MysqlPtr rootConnect(const std::string& socket, const std::string& database, std::string* error) {
    MysqlPtr m(mysql_init(nullptr));
    if (!m) {
        if (error) *error = "mysql_init failed";
        return nullptr;
    }
    unsigned timeout = 5;
    mysql_options(m.get(), MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(m.get(), MYSQL_OPT_READ_TIMEOUT, &timeout);
    if (!mysql_real_connect(m.get(), "localhost", "root", "",
                            database.empty() ? nullptr : database.c_str(), 0, socket.c_str(), 0)) {
        if (error) *error = mysql_error(m.get());
        return nullptr;
    }
    return m;
}

}  // namespace

MariaDb::MariaDb() {
    mariadbd_ = findProgram({"mariadbd", "mysqld"});
    installDb_ = findProgram({"mariadb-install-db", "mysql_install_db"});
    if (mariadbd_.empty() || installDb_.empty())
        throw std::runtime_error(std::string("mariadbd/mysqld or mariadb-install-db not found: ") +
                                 kInstallHint);

    // /tmp rather than $TMPDIR: the socket path must stay under the 107-byte sun_path limit.
    char tmpl[] = "/tmp/mtp-mariadb-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    dir_ = tmpl;

    try {
        std::vector<std::string> argv = {installDb_,
                                         "--no-defaults",
                                         "--auth-root-authentication-method=normal",
                                         "--skip-test-db",
                                         "--datadir=" + dir_ + "/data",
                                         "--user=" + currentUser()};
        for (const auto& a : serverArgs())
            if (a.rfind("--datadir", 0) != 0 && a.rfind("--user", 0) != 0) argv.push_back(a);
        CommandResult r = runCommand(argv, "", 120000);
        if (r.exitCode != 0)
            throw std::runtime_error(installDb_ + " failed (exit " + std::to_string(r.exitCode) +
                                     (r.timedOut ? ", timed out" : "") + "):\n" + r.out + r.err);
        start();
        rootExec("CREATE DATABASE " + std::string(kDatabase), "");
        std::string account = sqlQuote(kUser) + "@'localhost'";
        rootExec("CREATE USER " + account + " IDENTIFIED BY " + sqlQuote(kPassword), "");
        rootExec("GRANT ALL PRIVILEGES ON " + std::string(kDatabase) + ".* TO " + account, "");
    } catch (...) {
        stop(5000);
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
        throw;
    }
}

MariaDb::~MariaDb() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

// Options shared by install and server. Small buffers and no fsync: the data is thrown away
// after the run, and a fast start/stop keeps the outage tests quick.
std::vector<std::string> MariaDb::serverArgs() const {
    std::vector<std::string> a = {
        "--datadir=" + dir_ + "/data",
        "--innodb-buffer-pool-size=16M",
        "--innodb-log-file-size=8M",
        "--innodb-flush-method=nosync",
        "--innodb-doublewrite=0",
        "--innodb-flush-log-at-trx-commit=2",  // survives a SIGKILL of the server
        "--performance-schema=0",
        "--skip-name-resolve",
    };
    if (geteuid() == 0) a.push_back("--user=root");  // mariadbd refuses root without it
    return a;
}

std::string MariaDb::dsn() const {
    return "dbi:mysql:database=" + std::string(kDatabase) + ";mysql_socket=" + socketPath();
}

mtp::SqlSettings MariaDb::settings(const std::string& name) const {
    mtp::SqlSettings s;
    s.name = name;
    s.dsn = mtp::Dsn::parse(dsn());
    s.user = kUser;
    s.password = kPassword;
    return s;
}

bool MariaDb::running() {
    if (pid_ <= 0) return false;
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
        pid_ = -1;
        return false;
    }
    return true;
}

bool MariaDb::tryRootConnect(std::string* error) {
    return rootConnect(socketPath(), "", error) != nullptr;
}

void MariaDb::start() {
    if (running()) return;
    std::vector<std::string> args = {mariadbd_, "--no-defaults"};
    for (const auto& a : serverArgs()) args.push_back(a);
    for (const auto& a :
         {"--socket=" + socketPath(), "--skip-networking"s, "--pid-file=" + dir_ + "/mariadbd.pid",
          "--log-error=" + dir_ + "/err.log", "--tmpdir=" + dir_})
        args.push_back(a);

    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
    if (pid == 0) {
        // Dies with the test program even when that crashes before its destructors run.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = ::open("/dev/null", O_RDWR);
        int out = ::open((dir_ + "/mariadbd.out").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (devnull >= 0) dup2(devnull, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        dprintf(2, "exec %s: %s\n", argv[0], std::strerror(errno));
        _exit(127);
    }
    pid_ = pid;

    std::string lastError = "no socket yet";
    bool ready = waitFor(
        [&] {
            if (!running()) return true;  // exited: stop waiting, report below
            struct stat st;
            if (::stat(socketPath().c_str(), &st) != 0) return false;
            return tryRootConnect(&lastError);
        },
        30000, 20);
    if (!ready || !running()) {
        bool exited = !running();
        stop(2000);
        throw std::runtime_error(std::string("mariadbd ") +
                                 (exited ? "exited during start-up" : "not ready after 30 s") +
                                 " (last error: " + lastError + "); err.log:\n" + errorLogTail());
    }
}

bool MariaDb::stop(int graceMs) {
    if (!running()) return true;
    ::kill(pid_, SIGTERM);
    bool clean = waitFor([&] { return !running(); }, graceMs, 10);
    if (!clean) kill();
    return clean;
}

void MariaDb::kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

std::vector<std::vector<std::string>> MariaDb::rootQuery(const std::string& sql,
                                                         const std::string& database) {
    std::string error;
    MysqlPtr m = rootConnect(socketPath(), database, &error);
    if (!m) throw std::runtime_error("root connect: " + error);
    if (mysql_real_query(m.get(), sql.data(), sql.size()) != 0)
        throw std::runtime_error("root query '" + sql + "': " + mysql_error(m.get()));
    std::vector<std::vector<std::string>> rows;
    ResultPtr res(mysql_store_result(m.get()));
    if (!res) {
        if (mysql_field_count(m.get()) != 0)
            throw std::runtime_error("root query '" + sql + "': " + mysql_error(m.get()));
        return rows;
    }
    unsigned n = mysql_num_fields(res.get());
    while (MYSQL_ROW row = mysql_fetch_row(res.get())) {
        unsigned long* len = mysql_fetch_lengths(res.get());
        std::vector<std::string> r;
        for (unsigned i = 0; i < n; ++i) r.push_back(row[i] ? std::string(row[i], len[i]) : "NULL");
        rows.push_back(std::move(r));
    }
    return rows;
}

std::string MariaDb::errorLogTail(size_t lines) const {
    std::string text = readFile(dir_ + "/err.log") + readFile(dir_ + "/mariadbd.out");
    size_t pos = text.size();
    for (size_t n = 0; n <= lines && pos > 0; ++n) {
        size_t nl = text.rfind('\n', pos - 1);
        if (nl == std::string::npos) {
            pos = 0;
            break;
        }
        pos = nl;
    }
    return text.substr(pos);
}

MariaDb& sharedMariaDb() {
    static std::unique_ptr<MariaDb> db;
    static std::string failure;
    if (db) return *db;
    if (!failure.empty()) throw std::runtime_error(failure);
    try {
        db = std::make_unique<MariaDb>();
    } catch (const std::exception& e) {
        failure = e.what();
        throw;
    }
    return *db;
}

std::vector<std::string> sqlStatements(const std::string& text) {
    std::istringstream in(text);
    std::string line, body;
    while (std::getline(in, line)) {
        size_t first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos || line.compare(first, 2, "--") == 0) continue;
        body += line + "\n";
    }
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t semi = body.find(';', pos);
        std::string stmt =
            body.substr(pos, semi == std::string::npos ? std::string::npos : semi - pos);
        if (stmt.find_first_not_of(" \t\r\n") != std::string::npos) out.push_back(stmt);
        if (semi == std::string::npos) break;
        pos = semi + 1;
    }
    return out;
}

// An END-OF-MESSAGE request as Postfix's smtpd_end_of_data_restrictions sends it.
std::string howtoConnection(const MariaDb& db) {
    return "connections = {\n  db = { module = \"Sql\";\n    dsn = " + confString(db.dsn()) +
           ";\n    user = " + confString(MariaDb::kUser) + ";\n    password = " + confString(MariaDb::kPassword) +
           ";\n    connect_timeout = 5; read_timeout = 10; write_timeout = 10; };\n};\n";
}

std::string howtoVhost(long long threshold) {
    return R"(
virtual_hosts = (
  {
    name = "accounting";
    port = "@PORT1@";
    plugins = (
      { name = "QuotaPolicyConfig"; module = "SqlUserConfig";
        sql_query = "SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id) WHERE h.client_address=?";
        field = "client_address"; },
      { name = "QuotaIP"; module = "Quota";
        field = "client_address"; metric = "count";
        threshold = )" + std::to_string(threshold) + R"(; uc_threshold = "quota_count";
        action = "defer you exceeded your monthly limit, please insert coin"; },
      { name = "AcctIP"; module = "Accounting";
        fields = "client_address"; }
    );
  }
);
)";
}

std::string eomRequest(const std::string& instance, const std::string& client, long long rcpt,
                       long long size) {
    return itest::makeRequest({{"protocol_state", "END-OF-MESSAGE"},
                               {"protocol_name", "ESMTP"},
                               {"helo_name", "mx.example.org"},
                               {"queue_id", ""},
                               {"sender", "sender@example.org"},
                               {"recipient", ""},
                               {"recipient_count", std::to_string(rcpt)},
                               {"client_address", client},
                               {"client_name", "unknown"},
                               {"reverse_client_name", "unknown"},
                               {"instance", instance},
                               {"size", std::to_string(size)}});
}

}  // namespace itest
