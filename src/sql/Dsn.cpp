// Dsn::parse: reads mtpolicyd's Perl DBI data source names ("dbi:mysql:database=x;host=y",
// "dbi:SQLite:dbname=/path") into a Dsn. Pure string handling, no I/O.
//
// The MySQL part follows DBD::mysql's own parser (_OdbcParse): elements are separated by ';' or
// ':', "key=value" elements set a key, bare elements fill database, host and port in that order,
// and an IPv6 address may be written in brackets. The SQLite part follows DBD::SQLite: with an
// '=' the rest is a ';' list of keys, without one it is the file name itself. Unlike DBI, which
// ignores keys it does not know, an unknown key is an error: a typo in a DSN should stop the
// configuration test, not connect somewhere unexpected.
#include <cctype>
#include <string>
#include <vector>

#include "mtpolicyd/sql/SqlConnection.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {

namespace {

[[noreturn]] void fail(const std::string& what) { throw ConfigError("invalid dsn: " + what); }

// DBD::mysql keys that only tune things this implementation always does (utf8mb4, its own
// reconnect) or that are not supported but must not break an existing configuration.
bool isIgnoredMysqlKey(const std::string& key) {
    return key == "mysql_enable_utf8" || key == "mysql_enable_utf8mb4" ||
           key == "mysql_auto_reconnect" || key == "mysql_ssl";
}

const char* kMysqlKeys =
    "database (db, dbname), host (hostname), port, mysql_socket; ignored: mysql_enable_utf8, "
    "mysql_enable_utf8mb4, mysql_auto_reconnect, mysql_ssl";

// Keys that a DSN may technically carry but that belong in the connection block. The value is
// never echoed: it may be a password.
void rejectCredentials(const std::string& key) {
    if (key == "password" || key == "user")
        fail("'" + key + "' does not belong in the dsn; set the connection's '" + key +
             "' option instead");
}

// Splits DBD::mysql style: elements end at ';' or ':', except inside [...] (IPv6 literals);
// the brackets themselves are dropped. Empty elements are skipped.
std::vector<std::string> splitMysqlElements(const std::string& text) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < text.size()) {
        std::string elem;
        bool inBrackets = false;
        for (; pos < text.size(); ++pos) {
            char c = text[pos];
            if (c == '[') {
                inBrackets = true;
                continue;
            }
            if (c == ']') {
                inBrackets = false;
                continue;
            }
            if (!inBrackets && (c == ';' || c == ':')) break;
            elem += c;
        }
        if (inBrackets) fail("unbalanced '[' in '" + elem + "'");
        ++pos;  // skip the separator
        elem = trim(elem);
        if (!elem.empty()) out.push_back(elem);
    }
    return out;
}

unsigned parsePort(const std::string& value) {
    bool digits = !value.empty() && value.size() <= 5;
    for (char c : value)
        if (!std::isdigit(static_cast<unsigned char>(c))) digits = false;
    unsigned long port = digits ? std::stoul(value) : 0;
    if (port < 1 || port > 65535) fail("bad port '" + value + "' (expected 1-65535)");
    return static_cast<unsigned>(port);
}

void parseMysql(const std::string& rest, Dsn& dsn) {
    dsn.driver = Dsn::Driver::Mysql;
    bool haveDatabase = false, haveHost = false, havePort = false, haveSocket = false;
    auto setOnce = [](bool& have, const std::string& what) {
        if (have) fail(what + " given twice");
        have = true;
    };
    for (const auto& elem : splitMysqlElements(rest)) {
        auto eq = elem.find('=');
        if (eq == std::string::npos) {
            // A bare element fills the first of database, host, port that is still unset.
            if (!haveDatabase) {
                haveDatabase = true;
                dsn.database = elem;
            } else if (!haveHost) {
                haveHost = true;
                dsn.host = elem;
            } else if (!havePort) {
                havePort = true;
                dsn.port = parsePort(elem);
            } else {
                fail("unexpected element '" + elem + "' (database, host and port are already set)");
            }
            continue;
        }
        std::string key = trim(elem.substr(0, eq));
        std::string value = trim(elem.substr(eq + 1));
        if (key == "database" || key == "db" || key == "dbname") {
            setOnce(haveDatabase, "the database name");
            dsn.database = value;
        } else if (key == "host" || key == "hostname") {
            setOnce(haveHost, "the host");
            dsn.host = value;
        } else if (key == "port") {
            setOnce(havePort, "the port");
            dsn.port = parsePort(value);
        } else if (key == "mysql_socket") {
            setOnce(haveSocket, "mysql_socket");
            if (value.empty()) fail("mysql_socket is empty");
            dsn.socket = value;
        } else if (isIgnoredMysqlKey(key)) {
            // accepted for compatibility, see isIgnoredMysqlKey
        } else {
            rejectCredentials(key);
            fail("unknown key '" + key + "' for driver mysql (known: " + kMysqlKeys + ")");
        }
    }
    if (dsn.database.empty())
        fail("no database name (dbi:mysql:database=NAME;host=HOST or dbi:mysql:NAME)");
}

void parseSqlite(const std::string& rest, Dsn& dsn) {
    dsn.driver = Dsn::Driver::Sqlite;
    if (rest.find('=') == std::string::npos) {
        dsn.path = rest;  // dbi:SQLite:/path/file: the whole rest is the file name
    } else {
        bool havePath = false;
        size_t start = 0;
        while (start <= rest.size()) {
            size_t semi = rest.find(';', start);
            if (semi == std::string::npos) semi = rest.size();
            std::string elem = rest.substr(start, semi - start);
            start = semi + 1;
            if (trim(elem).empty()) continue;
            auto eq = elem.find('=');
            if (eq == std::string::npos)
                fail("unexpected element '" + trim(elem) + "' (expected dbname=FILE)");
            std::string key = trim(elem.substr(0, eq));
            if (key == "dbname" || key == "db" || key == "database") {
                if (havePath) fail("the database file given twice");
                havePath = true;
                // The file name is taken as written: it may legitimately contain spaces.
                dsn.path = elem.substr(eq + 1);
            } else {
                rejectCredentials(key);
                fail("unknown key '" + key + "' for driver SQLite (known: dbname, db, database)");
            }
        }
    }
    if (dsn.path.empty())
        fail("no database file (dbi:SQLite:dbname=/path/to/file or dbname=:memory:)");
}

}  // namespace

Dsn Dsn::parse(const std::string& raw) {
    std::string text = trim(raw);
    // DBI's own syntax: dbi:DRIVER(ATTRS):REST, "dbi" in any case.
    if (text.size() < 4 || toLower(text.substr(0, 4)) != "dbi:")
        fail(
            "must start with 'dbi:DRIVER:' (e.g. dbi:mysql:database=mtpolicyd;host=localhost "
            "or dbi:SQLite:dbname=/var/lib/mtpolicyd/mtpolicyd.sqlite)");
    size_t colon = text.find(':', 4);
    if (colon == std::string::npos) fail("no ':' after the driver name (dbi:DRIVER:...)");
    std::string driver = text.substr(4, colon - 4);
    std::string rest = text.substr(colon + 1);
    if (driver.empty()) fail("no driver name (dbi:mysql:... or dbi:SQLite:...)");
    if (driver.find('(') != std::string::npos)
        fail("driver attributes in the dsn (dbi:DRIVER(...):) are not supported");

    Dsn dsn;
    std::string lower = toLower(driver);
    if (lower == "mysql")
        parseMysql(rest, dsn);
    else if (lower == "sqlite")
        parseSqlite(rest, dsn);
    else
        fail("unknown driver '" + driver + "' (supported: mysql, SQLite)");
    return dsn;
}

}  // namespace mtp
