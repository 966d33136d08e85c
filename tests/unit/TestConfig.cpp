// Unit tests for the native (libconfig) configuration: mtp::Config::fromTree and Config::load.
// Defaults of every global key, mtpolicyd's value forms (numbers as strings, on/off booleans,
// comma-separated `port`), listen address parsing, and every configuration error; each error
// must name the file, the line ("test.conf:N:") and the key. Also --dump-config output:
// defaults included, passwords masked, and the dump reads back to the same configuration.
#include <cppunit/extensions/HelperMacros.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/core/Registry.h"
#include "mtpolicyd/util/Errors.h"

using mtp::Config;
using mtp::ConfigError;
using mtp::ListenSpec;

namespace {

const char* kOneVhost =
    "virtual_hosts = ( { name = \"t\"; port = \"12345\";\n"
    "  plugins = ( { name = \"a\"; module = \"Action\"; action = \"reject\"; } ); } );\n";

std::unique_ptr<Config> parse(const std::string& text) {
    return Config::fromTree(mtp::readLibconfigString(text, "test.conf"), "test.conf");
}

// Global settings followed by a minimal valid virtual host. The settings start on line 1.
std::unique_ptr<Config> parseGlobal(const std::string& globals) {
    return parse(globals + kOneVhost);
}

std::string dumpOf(const Config& c) {
    std::ostringstream os;
    c.dump(os);
    return os.str();
}

// Asserts that building `text` fails with a ConfigError naming test.conf, the line and `key`.
#define ASSERT_CONFIG_ERROR(text, line, key)                                                \
    do {                                                                                    \
        std::string msg_;                                                                   \
        try {                                                                               \
            parse(text);                                                                    \
        } catch (const ConfigError& e_) {                                                   \
            msg_ = e_.what();                                                               \
        }                                                                                   \
        CPPUNIT_ASSERT_MESSAGE("no ConfigError for:\n" + std::string(text), !msg_.empty()); \
        std::string where_ = "test.conf:" + std::to_string(line) + ":";                     \
        CPPUNIT_ASSERT_MESSAGE("'" + where_ + "' not in: " + msg_,                          \
                               msg_.find(where_) != std::string::npos);                     \
        CPPUNIT_ASSERT_MESSAGE("key '" + std::string(key) + "' not in: " + msg_,            \
                               msg_.find(key) != std::string::npos);                        \
    } while (0)

// A virtual host block whose plugin list starts on line 4 of the file: lines 4.. are `plugins`.
std::string vhostWithPlugins(const std::string& pluginLines) {
    return "virtual_hosts = (\n"      // 1
           "  { name = \"t\";\n"      // 2
           "    port = \"12345\";\n"  // 3
           "    plugins = (\n" +      // 4
           pluginLines +
           "    );\n"
           "  }\n"
           ");\n";
}

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/mtpolicyd-unit-XXXXXX";
        const char* d = mkdtemp(tmpl);
        CPPUNIT_ASSERT(d != nullptr);
        path = d;
    }
    ~TempDir() {
        for (const auto& f : files) ::unlink(f.c_str());
        ::rmdir(path.c_str());
    }
    std::string write(const std::string& name, const std::string& text) {
        std::string p = path + "/" + name;
        std::ofstream(p) << text;
        files.push_back(p);
        return p;
    }
    std::string path;
    std::vector<std::string> files;
};

}  // namespace

class TestConfig : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestConfig);
    CPPUNIT_TEST(testGlobalDefaults);
    CPPUNIT_TEST(testEveryGlobalKeyHasKnownDefault);
    CPPUNIT_TEST(testGlobalValuesApplied);
    CPPUNIT_TEST(testNumbersAsStrings);
    CPPUNIT_TEST(testBooleanForms);
    CPPUNIT_TEST(testPortAsList);
    CPPUNIT_TEST(testPortAsCommaSeparatedString);
    CPPUNIT_TEST(testPortSingleNumber);
    CPPUNIT_TEST(testListenSpecForms);
    CPPUNIT_TEST(testVirtualHostsAndConnections);
    CPPUNIT_TEST(testPluginOptionsAsStrings);
    CPPUNIT_TEST(testErrorUnknownGlobalKey);
    CPPUNIT_TEST(testErrorUnknownPluginKey);
    CPPUNIT_TEST(testErrorUnknownPluginKeyInNestedChain);
    CPPUNIT_TEST(testErrorUnknownModule);
    CPPUNIT_TEST(testErrorUnknownConnectionModule);
    CPPUNIT_TEST(testErrorUnknownConnectionKey);
    CPPUNIT_TEST(testErrorStringForInteger);
    CPPUNIT_TEST(testErrorFloatForInteger);
    CPPUNIT_TEST(testErrorGroupForString);
    CPPUNIT_TEST(testErrorPluginGroupForString);
    CPPUNIT_TEST(testErrorStringForNumber);
    CPPUNIT_TEST(testErrorBadBoolean);
    CPPUNIT_TEST(testErrorOutOfRange);
    CPPUNIT_TEST(testErrorMissingPluginAction);
    CPPUNIT_TEST(testErrorMissingVhostPort);
    CPPUNIT_TEST(testErrorMissingConnectionDsn);
    CPPUNIT_TEST(testErrorMissingVirtualHosts);
    CPPUNIT_TEST(testErrorEmptyPluginList);
    CPPUNIT_TEST(testErrorSyntax);
    CPPUNIT_TEST(testErrorDuplicateKey);
    CPPUNIT_TEST(testErrorUnknownVhostKey);
    CPPUNIT_TEST(testErrorMinServersAboveMaxServers);
    CPPUNIT_TEST(testErrorMaxServersBelowDefaultMinServers);
    CPPUNIT_TEST(testErrorTwoVhostsOnOnePort);
    CPPUNIT_TEST(testErrorDuplicateListenEntry);
    CPPUNIT_TEST(testErrorDuplicateListenViaDefaultHost);
    CPPUNIT_TEST(testErrorInvalidPort);
    CPPUNIT_TEST(testErrorBadOnError);
    CPPUNIT_TEST(testErrorInvalidRegex);
    CPPUNIT_TEST(testErrorScoreActionMatch);
    CPPUNIT_TEST(testErrorConditionBadScope);
    CPPUNIT_TEST(testErrorBadSyslogFacility);
    CPPUNIT_TEST(testLoadFile);
    CPPUNIT_TEST(testLoadErrorNamesPath);
    CPPUNIT_TEST(testLoadMissingFile);
    CPPUNIT_TEST(testLoadInclude);
    CPPUNIT_TEST(testRelativePathsFromConfigDir);
    CPPUNIT_TEST(testWarnings);
    CPPUNIT_TEST(testDumpContainsDefaults);
    CPPUNIT_TEST(testDumpMasksPassword);
    CPPUNIT_TEST(testDumpRoundTrip);
    CPPUNIT_TEST(testDumpRoundTripLargeInteger);
    CPPUNIT_TEST(testDumpRoundTripQuotedVhostName);
    CPPUNIT_TEST(testErrorRegexLimits);
    CPPUNIT_TEST_SUITE_END();

  public:
    void testGlobalDefaults() {
        auto c = parse(kOneVhost);
        CPPUNIT_ASSERT_EQUAL(std::string(""), c->user);
        CPPUNIT_ASSERT_EQUAL(std::string(""), c->group);
        CPPUNIT_ASSERT_EQUAL(std::string(""), c->pidFile);
        CPPUNIT_ASSERT_EQUAL(std::string(""), c->logFile);
        CPPUNIT_ASSERT_EQUAL(2, c->logLevel);
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), c->syslogIdent);
        CPPUNIT_ASSERT_EQUAL(std::string("mail"), c->syslogFacility);
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), c->global.str("host"));
        CPPUNIT_ASSERT_EQUAL(size_t(1), c->listen.size());
        CPPUNIT_ASSERT(c->listen[0].kind == ListenSpec::Kind::Tcp);
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), c->listen[0].host);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), c->listen[0].port);
        CPPUNIT_ASSERT_EQUAL(4, c->minServers);
        CPPUNIT_ASSERT_EQUAL(4, c->minSpareServers);
        CPPUNIT_ASSERT_EQUAL(12, c->maxSpareServers);
        CPPUNIT_ASSERT_EQUAL(25, c->maxServers);
        CPPUNIT_ASSERT_EQUAL(1000LL, c->maxRequests);
        CPPUNIT_ASSERT_EQUAL(20, c->requestTimeout);
        CPPUNIT_ASSERT_EQUAL(330, c->keepaliveTimeout);
        CPPUNIT_ASSERT_EQUAL(0, c->maxKeepalive);
        CPPUNIT_ASSERT_EQUAL(false, c->vhostByPolicyContext);
        CPPUNIT_ASSERT_EQUAL(300, c->sessionExpire);
        CPPUNIT_ASSERT_EQUAL(size_t(20000), c->sessionMaxEntries);
        CPPUNIT_ASSERT_EQUAL(size_t(16384), c->limits.maxLineLength);
        CPPUNIT_ASSERT_EQUAL(size_t(1024), c->limits.maxAttributes);
        CPPUNIT_ASSERT_EQUAL(size_t(131072), c->limits.maxRequestSize);
        CPPUNIT_ASSERT(c->connections.empty());
    }

    void testEveryGlobalKeyHasKnownDefault() {
        // The defaults as documented; a key added to globalSettings() must be added here too.
        const std::map<std::string, std::string> expected = {
            {"user", ""},
            {"group", ""},
            {"pid_file", ""},
            {"log_level", "2"},
            {"log_file", ""},
            {"syslog_ident", "mtpolicyd"},
            {"syslog_facility", "mail"},
            {"host", "127.0.0.1"},
            {"port", "127.0.0.1:12345"},
            {"min_servers", "4"},
            {"min_spare_servers", "4"},
            {"max_spare_servers", "12"},
            {"max_servers", "25"},
            {"max_requests", "1000"},
            {"request_timeout", "20"},
            {"keepalive_timeout", "330"},
            {"max_keepalive", "0"},
            {"vhost_by_policy_context", "0"},
            {"session_expire", "300"},
            {"session_max_entries", "20000"},
            {"max_line_length", "16384"},
            {"max_attributes", "1024"},
            {"max_request_size", "131072"},
        };
        auto c = parse(kOneVhost);
        CPPUNIT_ASSERT_EQUAL(expected.size(), mtp::globalSettings().size());
        for (const auto& s : mtp::globalSettings()) {
            auto it = expected.find(s.name);
            CPPUNIT_ASSERT_MESSAGE("undocumented global key " + s.name, it != expected.end());
            CPPUNIT_ASSERT_EQUAL_MESSAGE(s.name, it->second, c->global.str(s.name));
            CPPUNIT_ASSERT_MESSAGE(s.name + " must not count as set", !c->global.isSet(s.name));
        }
    }

    void testGlobalValuesApplied() {
        auto c = parseGlobal(
            "user = \"mtpolicyd\";\n"
            "group = \"mtpolicyd\";\n"
            "pid_file = \"/run/mtpolicyd/mtpolicyd.pid\";\n"
            "log_level = 4;\n"
            "log_file = \"/var/log/mtpolicyd.log\";\n"
            "syslog_ident = \"policy\";\n"
            "syslog_facility = \"local3\";\n"
            "min_servers = 2;\n"
            "min_spare_servers = 1;\n"
            "max_spare_servers = 3;\n"
            "max_servers = 8;\n"
            "max_requests = 0;\n"
            "request_timeout = 5;\n"
            "keepalive_timeout = 0;\n"
            "max_keepalive = 100;\n"
            "session_expire = 60;\n"
            "session_max_entries = 50;\n"
            "max_line_length = 1000;\n"
            "max_attributes = 64;\n"
            "max_request_size = 4096;\n");
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), c->user);
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), c->group);
        CPPUNIT_ASSERT_EQUAL(std::string("/run/mtpolicyd/mtpolicyd.pid"), c->pidFile);
        CPPUNIT_ASSERT_EQUAL(4, c->logLevel);
        CPPUNIT_ASSERT_EQUAL(std::string("/var/log/mtpolicyd.log"), c->logFile);
        CPPUNIT_ASSERT_EQUAL(std::string("policy"), c->syslogIdent);
        CPPUNIT_ASSERT_EQUAL(std::string("local3"), c->syslogFacility);
        CPPUNIT_ASSERT_EQUAL(2, c->minServers);
        CPPUNIT_ASSERT_EQUAL(1, c->minSpareServers);
        CPPUNIT_ASSERT_EQUAL(3, c->maxSpareServers);
        CPPUNIT_ASSERT_EQUAL(8, c->maxServers);
        CPPUNIT_ASSERT_EQUAL(0LL, c->maxRequests);
        CPPUNIT_ASSERT_EQUAL(5, c->requestTimeout);
        CPPUNIT_ASSERT_EQUAL(0, c->keepaliveTimeout);
        CPPUNIT_ASSERT_EQUAL(100, c->maxKeepalive);
        CPPUNIT_ASSERT_EQUAL(60, c->sessionExpire);
        CPPUNIT_ASSERT_EQUAL(size_t(50), c->sessionMaxEntries);
        CPPUNIT_ASSERT_EQUAL(size_t(1000), c->limits.maxLineLength);
        CPPUNIT_ASSERT_EQUAL(size_t(64), c->limits.maxAttributes);
        CPPUNIT_ASSERT_EQUAL(size_t(4096), c->limits.maxRequestSize);
        CPPUNIT_ASSERT(c->global.isSet("max_servers"));
        CPPUNIT_ASSERT_EQUAL(std::string("test.conf:11"), c->global.whereOf("max_servers"));
    }

    void testNumbersAsStrings() {
        auto c = parseGlobal(
            "log_level = \"3\";\n"
            "max_servers = \"30\";\n"
            "keepalive_timeout = \" 300 \";\n"
            "max_requests = \"5000000000\";\n");
        CPPUNIT_ASSERT_EQUAL(3, c->logLevel);
        CPPUNIT_ASSERT_EQUAL(30, c->maxServers);
        CPPUNIT_ASSERT_EQUAL(300, c->keepaliveTimeout);
        CPPUNIT_ASSERT_EQUAL(5000000000LL, c->maxRequests);
    }

    void testBooleanForms() {
        struct Case {
            const char* text;
            bool expect;
        } cases[] = {
            {"true", true},     {"false", false},     {"1", true},      {"0", false},
            {"\"1\"", true},    {"\"0\"", false},     {"\"on\"", true}, {"\"off\"", false},
            {"\"true\"", true}, {"\"false\"", false}, {"TRUE", true},   {"\"On\"", true},
        };
        for (const auto& k : cases) {
            auto c = parseGlobal(std::string("vhost_by_policy_context = ") + k.text + ";\n");
            CPPUNIT_ASSERT_EQUAL_MESSAGE(k.text, k.expect, c->vhostByPolicyContext);
        }
    }

    void testPortAsList() {
        auto c = parseGlobal(
            "port = [ \"127.0.0.1:12345\", \"127.0.0.1:12346\", \"/run/mtpolicyd/policy.sock\" "
            "];\n");
        CPPUNIT_ASSERT_EQUAL(size_t(3), c->listen.size());
        CPPUNIT_ASSERT(c->listen[0].kind == ListenSpec::Kind::Tcp);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), c->listen[0].port);
        CPPUNIT_ASSERT_EQUAL(std::string("12346"), c->listen[1].port);
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), c->listen[1].host);
        CPPUNIT_ASSERT(c->listen[2].kind == ListenSpec::Kind::Unix);
        CPPUNIT_ASSERT_EQUAL(std::string("/run/mtpolicyd/policy.sock"), c->listen[2].path);
        CPPUNIT_ASSERT_EQUAL(std::string("/run/mtpolicyd/policy.sock"), c->listen[2].key());
        // A libconfig list ( ... ) is accepted as well as an array [ ... ].
        auto d = parseGlobal("port = ( \"127.0.0.1:12345\", \"12346\" );\n");
        CPPUNIT_ASSERT_EQUAL(size_t(2), d->listen.size());
    }

    void testPortAsCommaSeparatedString() {
        // mtpolicyd's form: port="127.0.0.1:12345,127.0.0.1:12346"
        auto c = parseGlobal(
            "host = \"192.0.2.1\";\nport = \"127.0.0.1:12345, 12346 ,/tmp/p.sock|unix\";\n");
        CPPUNIT_ASSERT_EQUAL(size_t(3), c->listen.size());
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), c->listen[0].host);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), c->listen[0].port);
        CPPUNIT_ASSERT_EQUAL(std::string("192.0.2.1"), c->listen[1].host);  // bare port uses `host`
        CPPUNIT_ASSERT_EQUAL(std::string("12346"), c->listen[1].port);
        CPPUNIT_ASSERT(c->listen[2].kind == ListenSpec::Kind::Unix);
        CPPUNIT_ASSERT_EQUAL(std::string("/tmp/p.sock"), c->listen[2].path);
    }

    void testPortSingleNumber() {
        auto c = parseGlobal("port = 12399;\n");
        CPPUNIT_ASSERT_EQUAL(size_t(1), c->listen.size());
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), c->listen[0].host);
        CPPUNIT_ASSERT_EQUAL(std::string("12399"), c->listen[0].port);
    }

    void testListenSpecForms() {
        ListenSpec s;
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("127.0.0.1:12345", "x", s));
        CPPUNIT_ASSERT(s.kind == ListenSpec::Kind::Tcp);
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), s.host);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), s.port);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), s.key());

        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("[::1]:12345", "x", s));
        CPPUNIT_ASSERT(s.kind == ListenSpec::Kind::Tcp);
        CPPUNIT_ASSERT_EQUAL(std::string("::1"), s.host);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), s.port);

        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("12345", "10.1.2.3", s));
        CPPUNIT_ASSERT_EQUAL(std::string("10.1.2.3"), s.host);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), s.port);

        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("/run/mtpolicyd/p.sock", "x", s));
        CPPUNIT_ASSERT(s.kind == ListenSpec::Kind::Unix);
        CPPUNIT_ASSERT_EQUAL(std::string("/run/mtpolicyd/p.sock"), s.path);
        CPPUNIT_ASSERT_EQUAL(std::string("/run/mtpolicyd/p.sock"), s.key());

        CPPUNIT_ASSERT_EQUAL(std::string(""),
                             ListenSpec::parse("/run/mtpolicyd/p.sock|unix", "x", s));
        CPPUNIT_ASSERT(s.kind == ListenSpec::Kind::Unix);
        CPPUNIT_ASSERT_EQUAL(std::string("/run/mtpolicyd/p.sock"), s.path);

        CPPUNIT_ASSERT(!ListenSpec::parse("127.0.0.1:0", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("127.0.0.1:65536", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("127.0.0.1:http", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("127.0.0.1:", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("-1", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("", "x", s).empty());
    }

    void testVirtualHostsAndConnections() {
        auto c = parse(
            "port = \"12345,12346\";\n"
            "connections = {\n"
            "  db = { module = \"Sql\"; dsn = \"dbi:mysql:database=mtpolicyd;host=localhost\";\n"
            "         user = \"mtpolicyd\"; password = \"secret\"; };\n"
            "};\n"
            "virtual_hosts = (\n"
            "  { name = \"reputation\"; port = \"12345\";\n"
            "    plugins = ( { name = \"a\"; module = \"Action\"; action = \"dunno\"; } ); },\n"
            "  { name = \"accounting\"; port = 12346;\n"  // a number, like <VirtualHost 12346>
            "    plugins = ( { name = \"s\"; module = \"SetField\"; key = \"k\"; value = \"v\"; "
            "},\n"
            "                { name = \"b\"; module = \"Action\"; action = \"reject\"; } ); }\n"
            ");\n");
        CPPUNIT_ASSERT_EQUAL(size_t(2), c->vhosts.size());
        CPPUNIT_ASSERT(c->vhostForKey("12346") == c->vhostByName("accounting"));
        CPPUNIT_ASSERT(c->vhostForKey("12345") == c->vhostByName("reputation"));
        CPPUNIT_ASSERT(c->vhostForKey("12347") == nullptr);
        CPPUNIT_ASSERT(c->vhostByName("nope") == nullptr);
        CPPUNIT_ASSERT_EQUAL(size_t(2), c->vhostByName("accounting")->chain.plugins.size());
        CPPUNIT_ASSERT_EQUAL(std::string("SetField"),
                             c->vhostByName("accounting")->chain.plugins[0]->module());
        CPPUNIT_ASSERT_EQUAL(std::string("b"),
                             c->vhostByName("accounting")->chain.plugins[1]->name());

        const mtp::ConnectionConfig* db = c->connection("db");
        CPPUNIT_ASSERT(db != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("Sql"), db->module);
        CPPUNIT_ASSERT_EQUAL(std::string("dbi:mysql:database=mtpolicyd;host=localhost"),
                             db->opts.str("dsn"));
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), db->opts.str("user"));
        CPPUNIT_ASSERT_EQUAL(std::string("secret"), db->opts.str("password"));
        CPPUNIT_ASSERT_EQUAL(5LL, db->opts.integer("connect_timeout"));
        CPPUNIT_ASSERT(c->connection("ldap") == nullptr);
    }

    void testPluginOptionsAsStrings() {
        auto c =
            parse(vhostWithPlugins("      { name = \"s\"; module = \"ScoreAction\"; threshold = "
                                   "\"7.5\"; action = \"reject\";\n"
                                   "        on_error = \"continue\"; log_level = \"1\"; }\n"));
        const mtp::Plugin& p = *c->vhosts[0]->chain.plugins[0];
        CPPUNIT_ASSERT_DOUBLES_EQUAL(7.5, p.options().number("threshold"), 1e-9);
        CPPUNIT_ASSERT(p.continueOnError());
        CPPUNIT_ASSERT_EQUAL(1LL, p.options().integer("log_level"));
        // Defaults of the common plugin keys.
        auto d = parse(kOneVhost);
        const mtp::Plugin& q = *d->vhosts[0]->chain.plugins[0];
        CPPUNIT_ASSERT(!q.continueOnError());
        CPPUNIT_ASSERT_EQUAL(std::string("fail"), q.options().str("on_error"));
        CPPUNIT_ASSERT_EQUAL(4LL, q.options().integer("log_level"));
    }

    // --- errors -------------------------------------------------------------------------

    void testErrorUnknownGlobalKey() {
        ASSERT_CONFIG_ERROR(std::string("log_level = 2;\n\nkeepalive_timout = 300;\n") + kOneVhost,
                            3, "keepalive_timout");
    }

    void testErrorUnknownPluginKey() {
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"a\";\n"         // 5
                                             "        module = \"Action\";\n"  // 6
                                             "        action = \"reject\";\n"  // 7
                                             "        treshold = 5; }\n"),     // 8
                            8, "treshold");
    }

    void testErrorUnknownPluginKeyInNestedChain() {
        ASSERT_CONFIG_ERROR(
            vhostWithPlugins(
                "      { name = \"c\"; module = \"Condition\"; key = \"sender\";\n"  // 5
                "        match = \"a@b\";\n"                                         // 6
                "        plugins = (\n"                                              // 7
                "          { name = \"in\"; module = \"Action\";\n"                  // 8
                "            acton = \"reject\"; }\n"                                // 9
                "        ); }\n"),
            9, "acton");
    }

    void testErrorUnknownModule() {
        std::string msg;
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"a\";\n"        // 5
                                             "        module = \"Acton\";\n"  // 6
                                             "        action = \"reject\"; }\n"),
                            6, "module");
        try {
            parse(vhostWithPlugins(
                "      { name = \"a\"; module = \"Acton\"; action = \"reject\"; }\n"));
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT(msg.find("Acton") != std::string::npos);
    }

    void testErrorUnknownConnectionModule() {
        ASSERT_CONFIG_ERROR(std::string("connections = {\n"
                                        "  ldap = {\n"
                                        "    module = \"Ldap\";\n"  // 3
                                        "  };\n"
                                        "};\n") +
                                kOneVhost,
                            3, "module");
    }

    void testErrorUnknownConnectionKey() {
        ASSERT_CONFIG_ERROR(std::string("connections = {\n"
                                        "  db = {\n"
                                        "    module = \"Sql\";\n"
                                        "    dsn = \"dbi:SQLite:dbname=/tmp/x\";\n"
                                        "    passwd = \"x\";\n"  // 5
                                        "  };\n"
                                        "};\n") +
                                kOneVhost,
                            5, "passwd");
    }

    void testErrorStringForInteger() {
        ASSERT_CONFIG_ERROR(std::string("log_level = 2;\nmax_servers = \"many\";\n") + kOneVhost, 2,
                            "max_servers");
    }

    void testErrorFloatForInteger() {
        ASSERT_CONFIG_ERROR(std::string("\nrequest_timeout = 2.5;\n") + kOneVhost, 2,
                            "request_timeout");
    }

    void testErrorGroupForString() {
        ASSERT_CONFIG_ERROR(
            std::string("log_level = 2;\n\nuser = { name = \"x\"; };\n") + kOneVhost, 3, "user");
    }

    void testErrorPluginGroupForString() {
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"a\";\n"                    // 5
                                             "        module = \"Action\";\n"             // 6
                                             "        action = { text = \"x\"; }; }\n"),  // 7
                            7, "action");
    }

    void testErrorStringForNumber() {
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"s\";\n"              // 5
                                             "        module = \"ScoreAction\";\n"  // 6
                                             "        threshold = \"ten\";\n"       // 7
                                             "        action = \"reject\"; }\n"),
                            7, "threshold");
    }

    void testErrorBadBoolean() {
        ASSERT_CONFIG_ERROR(std::string("\n\nvhost_by_policy_context = \"maybe\";\n") + kOneVhost,
                            3, "vhost_by_policy_context");
    }

    void testErrorOutOfRange() {
        ASSERT_CONFIG_ERROR(std::string("\nlog_level = 9;\n") + kOneVhost, 2, "log_level");
    }

    void testErrorMissingPluginAction() {
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"first\"; module = \"SetField\"; key "
                                             "= \"a\"; value = \"b\"; },\n"  // 5
                                             "      { name = \"a\";\n"       // 6
                                             "        module = \"Action\"; }\n"),
                            6, "action");
    }

    void testErrorMissingVhostPort() {
        ASSERT_CONFIG_ERROR(
            "log_level = 2;\n"
            "virtual_hosts = (\n"
            "  { name = \"t\";\n"  // 3
            "    plugins = ( { name = \"a\"; module = \"Action\"; action = \"reject\"; } );\n"
            "  }\n"
            ");\n",
            3, "port");
    }

    void testErrorMissingConnectionDsn() {
        ASSERT_CONFIG_ERROR(std::string("connections = {\n"
                                        "  db = {\n"  // 2
                                        "    module = \"Sql\";\n"
                                        "  };\n"
                                        "};\n") +
                                kOneVhost,
                            2, "dsn");
    }

    void testErrorMissingVirtualHosts() {
        ASSERT_CONFIG_ERROR("log_level = 2;\nport = \"12345\";\n", 1, "virtual_hosts");
    }

    void testErrorEmptyPluginList() {
        ASSERT_CONFIG_ERROR(
            "virtual_hosts = (\n"
            "  { name = \"t\"; port = \"12345\";\n"
            "    plugins = ( ); }\n"  // 3
            ");\n",
            3, "plugins");
    }

    void testErrorSyntax() {
        std::string msg;
        try {
            parse(std::string("log_level = 2;\nmax_servers = 4;\nuser = \"x\"\n  = ;\n") +
                  kOneVhost);
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE("no error", !msg.empty());
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("test.conf:4:") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("syntax error") != std::string::npos);
        // An unterminated group: reported (at the end of the file), never accepted.
        msg.clear();
        try {
            parse("log_level = 2;\nvirtual_hosts = ( { name = \"t\";\n");
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("test.conf:") != std::string::npos);
    }

    void testErrorDuplicateKey() {
        // As with Config::General in mtpolicyd, a key given twice is fatal, not "last wins".
        ASSERT_CONFIG_ERROR(
            std::string("log_level = 2;\nmax_servers = 4;\nmax_servers = 8;\n") + kOneVhost, 3,
            "duplicate");
    }

    void testErrorUnknownVhostKey() {
        ASSERT_CONFIG_ERROR(
            "virtual_hosts = (\n"
            "  { name = \"t\"; port = \"12345\";\n"
            "    plugin = ( { name = \"a\"; module = \"Action\"; action = \"reject\"; } ); }\n"  // 3
            ");\n",
            3, "plugin");
    }

    void testErrorMinServersAboveMaxServers() {
        ASSERT_CONFIG_ERROR(
            std::string("log_level = 2;\nmin_servers = 10;\nmax_servers = 5;\n") + kOneVhost, 2,
            "min_servers");
    }

    void testErrorMaxServersBelowDefaultMinServers() {
        // min_servers keeps its default (4): the error must point at the max_servers line the
        // admin wrote, not at "default".
        ASSERT_CONFIG_ERROR(std::string("log_level = 2;\n\nmax_servers = 2;\n") + kOneVhost, 3,
                            "max_servers");
    }

    void testErrorTwoVhostsOnOnePort() {
        ASSERT_CONFIG_ERROR(
            "port = \"12345,12346\";\n"
            "virtual_hosts = (\n"
            "  { name = \"one\"; port = \"12345\";\n"
            "    plugins = ( { name = \"a\"; module = \"Action\"; action = \"reject\"; } ); },\n"
            "  { name = \"two\";\n"
            "    port = \"12345\";\n"  // 6
            "    plugins = ( { name = \"b\"; module = \"Action\"; action = \"reject\"; } ); }\n"
            ");\n",
            6, "port");
    }

    void testErrorDuplicateListenEntry() {
        ASSERT_CONFIG_ERROR(
            std::string("log_level = 2;\nport = [ \"127.0.0.1:12345\", \"127.0.0.1:12346\", "
                        "\"127.0.0.1:12345\" ];\n") +
                kOneVhost,
            2, "port");
    }

    void testErrorDuplicateListenViaDefaultHost() {
        // "12345" with the default host is 127.0.0.1:12345 again.
        ASSERT_CONFIG_ERROR(std::string("\n\nport = \"127.0.0.1:12345,12345\";\n") + kOneVhost, 3,
                            "port");
    }

    void testErrorInvalidPort() {
        ASSERT_CONFIG_ERROR(
            std::string("log_level = 2;\nport = \"127.0.0.1:70000\";\n") + kOneVhost, 2, "port");
        ASSERT_CONFIG_ERROR(
            std::string("log_level = 2;\nport = [ \"127.0.0.1:12345\", \"127.0.0.1:smtp\" ];\n") +
                kOneVhost,
            2, "port");
        ASSERT_CONFIG_ERROR(
            std::string("log_level = 2;\n\nport = \"relative/path.sock|unix\";\n") + kOneVhost, 3,
            "port");
    }

    void testErrorBadOnError() {
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"a\";\n"               // 5
                                             "        module = \"Action\";\n"        // 6
                                             "        action = \"reject\";\n"        // 7
                                             "        on_error = \"ignore\"; }\n"),  // 8
                            8, "on_error");
    }

    void testErrorInvalidRegex() {
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"c\";\n"              // 5
                                             "        module = \"Condition\";\n"    // 6
                                             "        key = \"helo_name\";\n"       // 7
                                             "        re_match = \"^(foo|bar\";\n"  // 8
                                             "        action = \"reject\"; }\n"),
                            8, "re_match");
    }

    void testErrorScoreActionMatch() {
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"s\";\n"              // 5
                                             "        module = \"ScoreAction\";\n"  // 6
                                             "        threshold = 5;\n"             // 7
                                             "        match = \"ge\";\n"            // 8
                                             "        action = \"reject\"; }\n"),
                            8, "match");
    }

    void testErrorConditionBadScope() {
        ASSERT_CONFIG_ERROR(vhostWithPlugins("      { name = \"c\";\n"            // 5
                                             "        module = \"Condition\";\n"  // 6
                                             "        key = \"env:HOME\";\n"      // 7
                                             "        match = \"/root\";\n"
                                             "        action = \"reject\"; }\n"),
                            7, "key");
    }

    void testErrorBadSyslogFacility() {
        ASSERT_CONFIG_ERROR(
            std::string("log_level = 2;\nsyslog_facility = \"mial\";\n") + kOneVhost, 2,
            "syslog_facility");
    }

    // --- files --------------------------------------------------------------------------

    void testLoadFile() {
        TempDir d;
        std::string path = d.write("mtpolicyd.conf",
                                   "# comment\n"
                                   "log_level = 3;\n"
                                   "port = \"127.0.0.1:12399\";\n" +
                                       std::string(kOneVhost));
        auto c = Config::load(path);
        CPPUNIT_ASSERT_EQUAL(path, c->file);
        CPPUNIT_ASSERT_EQUAL(3, c->logLevel);
        CPPUNIT_ASSERT_EQUAL(std::string("12399"), c->listen[0].port);
        CPPUNIT_ASSERT_EQUAL(size_t(1), c->vhosts.size());
        CPPUNIT_ASSERT_EQUAL(path + ":2", c->global.whereOf("log_level"));
    }

    void testLoadErrorNamesPath() {
        TempDir d;
        std::string path =
            d.write("bad.conf", "log_level = 3;\n\nbogus_key = 1;\n" + std::string(kOneVhost));
        std::string msg;
        try {
            Config::load(path);
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(path + ":3:") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("bogus_key") != std::string::npos);

        std::string syn = d.write("syntax.conf", "log_level = 3;\nuser = ;\n");
        msg.clear();
        try {
            Config::load(syn);
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(syn + ":2:") != std::string::npos);
    }

    void testLoadMissingFile() {
        TempDir d;
        std::string path = d.path + "/does-not-exist.conf";
        std::string msg;
        try {
            Config::load(path);
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE("no error", !msg.empty());
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(path) != std::string::npos);
    }

    void testLoadInclude() {
        // @include is relative to the directory of the main file, not the working directory.
        TempDir d;
        d.write("vhosts.conf", kOneVhost);
        std::string main = d.write("main.conf", "log_level = 1;\n@include \"vhosts.conf\"\n");
        auto c = Config::load(main);
        CPPUNIT_ASSERT_EQUAL(1, c->logLevel);
        CPPUNIT_ASSERT_EQUAL(size_t(1), c->vhosts.size());

        // An error inside the included file names that file and its line.
        d.write("vhosts2.conf",
                "virtual_hosts = (\n"
                "  { name = \"t\"; port = \"12345\";\n"
                "    plugins = ( { name = \"a\"; module = \"Action\";\n"
                "                  acton = \"reject\"; } ); } );\n");
        std::string main2 = d.write("main2.conf", "log_level = 1;\n@include \"vhosts2.conf\"\n");
        std::string msg;
        try {
            Config::load(main2);
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("vhosts2.conf:4:") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("acton") != std::string::npos);
    }

    void testRelativePathsFromConfigDir() {
        // Relative pid_file/log_file mean the same after chdir("/") and on reload.
        TempDir d;
        std::string path = d.write(
            "rel.conf", "pid_file = \"run/mtpolicyd.pid\";\nlog_file = \"mtpolicyd.log\";\n" +
                            std::string(kOneVhost));
        auto c = Config::load(path);
        CPPUNIT_ASSERT_EQUAL(d.path + "/run/mtpolicyd.pid", c->pidFile);
        CPPUNIT_ASSERT_EQUAL(d.path + "/mtpolicyd.log", c->logFile);
        std::string abs = d.write(
            "abs.conf", "pid_file = \"/run/mtpolicyd/mtpolicyd.pid\";\n" + std::string(kOneVhost));
        CPPUNIT_ASSERT_EQUAL(std::string("/run/mtpolicyd/mtpolicyd.pid"),
                             Config::load(abs)->pidFile);
    }

    void testWarnings() {
        auto ok = parse(std::string("user = \"root\";\nport = \"127.0.0.1:12345\";\n") + kOneVhost);
        CPPUNIT_ASSERT_EQUAL(size_t(0), ok->warnings().size());

        auto c = parse(
            "user = \"no-such-user-mtpolicyd-unit\";\n"  // 1
            "port = \"127.0.0.1:12345, 12399\";\n"       // 2
            "virtual_hosts = (\n"
            "  { name = \"t\"; port = \"12345\";\n"
            "    plugins = ( { name = \"a\"; module = \"Action\"; action = \"reject\"; } ); },\n"
            "  { name = \"ctx\"; port = \"0\";\n"  // 6
            "    plugins = ( { name = \"b\"; module = \"Action\"; action = \"reject\"; } ); }\n"
            ");\n");
        std::vector<std::string> w = c->warnings();
        std::string all;
        for (const auto& x : w) all += x + "\n";
        CPPUNIT_ASSERT_EQUAL_MESSAGE(all, size_t(3), w.size());
        auto has = [&](const std::string& a, const std::string& b) {
            for (const auto& x : w)
                if (x.find(a) != std::string::npos && x.find(b) != std::string::npos) return true;
            return false;
        };
        CPPUNIT_ASSERT_MESSAGE(all, has("test.conf:2:", "12399"));  // port without vhost
        CPPUNIT_ASSERT_MESSAGE(all, has("test.conf:6:", "ctx"));    // vhost without port
        CPPUNIT_ASSERT_MESSAGE(all, has("test.conf:1:", "no-such-user-mtpolicyd-unit"));
    }

    // --- dump ---------------------------------------------------------------------------

    void testDumpContainsDefaults() {
        auto c = parse(kOneVhost);
        std::string out = dumpOf(*c);
        CPPUNIT_ASSERT_MESSAGE(out, out.find("keepalive_timeout = 330;") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(out, out.find("max_servers = 25;") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(out, out.find("syslog_facility = \"mail\";") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(out,
                               out.find("vhost_by_policy_context = false;") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(out, out.find("\"127.0.0.1:12345\"") != std::string::npos);
        // Plugin defaults too.
        CPPUNIT_ASSERT_MESSAGE(out, out.find("on_error = \"fail\";") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(out, out.find("action = \"reject\";") != std::string::npos);
    }

    void testDumpMasksPassword() {
        auto c = parse(
            std::string(
                "connections = { db = { module = \"Sql\"; dsn = \"dbi:SQLite:dbname=/tmp/x\"; "
                "password = \"secret\"; }; };\n") +
            kOneVhost);
        std::string out = dumpOf(*c);
        CPPUNIT_ASSERT_MESSAGE(out, out.find("secret") == std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(out, out.find("password") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(out, out.find("dbi:SQLite:dbname=/tmp/x") != std::string::npos);
    }

    void testDumpRoundTrip() {
        auto c = parse(
            "user = \"mtpolicyd\";\n"
            "log_level = \"3\";\n"
            "port = \"127.0.0.1:12345, 12346, /tmp/mtpolicyd-test.sock\";\n"
            "vhost_by_policy_context = \"on\";\n"
            "max_keepalive = 50;\n"
            "connections = { db = { module = \"Sql\"; dsn = \"dbi:SQLite:dbname=/tmp/x\"; password "
            "= \"secret\"; }; };\n"
            "virtual_hosts = (\n"
            "  { name = \"reputation\"; port = \"12345\";\n"
            "    plugins = (\n"
            "      { name = \"helo\"; module = \"Condition\"; key = \"helo_name\";\n"
            "        re_match = \"^mail\\\\.(example|test)\\\\.org$\"; score = 2.5; uc_action = "
            "\"helo_action\";\n"
            "        plugins = ( { name = \"inner\"; module = \"SetField\"; key = \"k\"; value = "
            "\"say \\\"hi\\\"\"; } ); },\n"
            "      { name = \"sa\"; module = \"ScoreAction\"; threshold = 7.5; match = \"gt\";\n"
            "        action = \"reject sender ip %IP% is blocked (score=%SCORE%%SCORE_DETAIL%)\"; "
            "},\n"
            "      { name = \"cf\"; module = \"ClearFields\"; fields = \"a, b\"; fields_prefix = [ "
            "\"greylist-\" ]; },\n"
            "      { name = \"hdr\"; module = \"AddScoreHeader\"; spam_score = \"6\"; on_error = "
            "\"continue\"; }\n"
            "    ); },\n"
            "  { name = \"acct\"; port = \"/tmp/mtpolicyd-test.sock\";\n"
            "    plugins = ( { name = \"a\"; module = \"Action\"; action = \"dunno\"; } ); }\n"
            ");\n");
        std::string first = dumpOf(*c);
        std::unique_ptr<Config> again;
        try {
            again = parse(first);
        } catch (const ConfigError& e) {
            CPPUNIT_FAIL(std::string("dump does not parse: ") + e.what() + "\n" + first);
        }
        std::string second = dumpOf(*again);
        CPPUNIT_ASSERT_EQUAL(first, second);
        CPPUNIT_ASSERT_EQUAL(3, again->logLevel);
        CPPUNIT_ASSERT_EQUAL(true, again->vhostByPolicyContext);
        CPPUNIT_ASSERT_EQUAL(50, again->maxKeepalive);
        CPPUNIT_ASSERT_EQUAL(size_t(3), again->listen.size());
        CPPUNIT_ASSERT_EQUAL(size_t(2), again->vhosts.size());
        const mtp::Plugin& helo = *again->vhostByName("reputation")->chain.plugins[0];
        CPPUNIT_ASSERT_EQUAL(std::string("^mail\\.(example|test)\\.org$"),
                             helo.options().str("re_match"));
        CPPUNIT_ASSERT_EQUAL(std::string("helo_action"), helo.options().ucKey("action"));
        CPPUNIT_ASSERT(helo.nestedChain() != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("say \"hi\""),
                             helo.nestedChain()->plugins[0]->options().str("value"));
        CPPUNIT_ASSERT(again->vhostForKey("/tmp/mtpolicyd-test.sock") ==
                       again->vhostByName("acct"));
    }

    void testDumpRoundTripLargeInteger() {
        // max_requests accepts values above 2^31; the dump must read back to the same value.
        auto c = parseGlobal("max_requests = \"5000000000\";\n");
        CPPUNIT_ASSERT_EQUAL(5000000000LL, c->maxRequests);
        auto again = parse(dumpOf(*c));
        CPPUNIT_ASSERT_EQUAL(5000000000LL, again->maxRequests);
    }

    void testDumpRoundTripQuotedVhostName() {
        // Every string in the dump is quoted and escaped, the virtual host name included.
        auto c = parse(
            "virtual_hosts = ( { name = \"the \\\"relay\\\" host\"; port = \"12345\";\n"
            "  plugins = ( { name = \"a\"; module = \"Action\"; action = \"reject \\\"no\\\" "
            "\\\\o/\"; } ); } );\n");
        CPPUNIT_ASSERT_EQUAL(std::string("the \"relay\" host"), c->vhosts[0]->name);
        std::string first = dumpOf(*c);
        std::unique_ptr<Config> again;
        try {
            again = parse(first);
        } catch (const ConfigError& e) {
            CPPUNIT_FAIL(std::string("dump does not parse: ") + e.what() + "\n" + first);
        }
        CPPUNIT_ASSERT_EQUAL(std::string("the \"relay\" host"), again->vhosts[0]->name);
        CPPUNIT_ASSERT_EQUAL(std::string("reject \"no\" \\o/"),
                             again->vhosts[0]->chain.plugins[0]->options().str("action"));
    }

    void testErrorRegexLimits() {
        // Found by tests/fuzz (corpus fuzz_config/regress-regex-backref-overflow) when re_match
        // used libstdc++'s std::regex (an unchecked back-reference or repetition number, and a
        // compiler recursing once per term). With PCRE2 these are still config errors: PCRE2
        // refuses the numbers, and patterns over 4096 characters are refused before compiling.
        auto condition = [](const std::string& re) {
            return vhostWithPlugins("      { name = \"c\";\n"            // 5
                                    "        module = \"Condition\";\n"  // 6
                                    "        key = \"helo_name\";\n"     // 7
                                    "        re_match = \"" + re + "\";\n"  // 8
                                    "        action = \"reject\"; }\n");
        };
        ASSERT_CONFIG_ERROR(condition("^mail\\\\.(example|test)\\\\" + std::string(90, '6') + ".org$"), 8,
                            "re_match");
        ASSERT_CONFIG_ERROR(condition("^a{" + std::string(20, '9') + "}$"), 8, "re_match");
        ASSERT_CONFIG_ERROR(condition("^a{1," + std::string(20, '9') + "}$"), 8, "re_match");
        ASSERT_CONFIG_ERROR(condition(std::string(4097, 'a')), 8, "re_match");
        // Long digit strings as literals, ordinary counts and back-references, and a pattern
        // at the length limit are fine.
        CPPUNIT_ASSERT_NO_THROW(parse(condition("^4915112345678@example\\\\.org$")));
        CPPUNIT_ASSERT_NO_THROW(parse(condition("^(a)\\\\1{2,30}[0-9]{4}$")));
        CPPUNIT_ASSERT_NO_THROW(parse(condition(std::string(4096, 'a'))));
    }
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestConfig);
