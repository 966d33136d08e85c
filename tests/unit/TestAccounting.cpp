// Unit tests for the accounting how-to plugins, Accounting, Quota and SqlUserConfig, against
// an in-memory SQLite database (each Config owns one SqlConnection, so each test has its own
// database). Messages go through the vhost's chain with a session from a SessionStore, as the
// worker does: one message = one instance. Reproduces upstream t/plugin-accounting-quota.t and
// t/plugin-sqluserconfig.t, and checks what an administrator would look at in the tables.
#include <cppunit/extensions/HelperMacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/core/Session.h"
#include "mtpolicyd/core/VirtualHost.h"
#include "mtpolicyd/plugins/UserConfigJson.h"
#include "mtpolicyd/sql/SqlConnection.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"
#include "mtpolicyd/util/Strings.h"
#include "unit/TestHelpers.h"

using mtp::ChainResult;
using mtp::Config;
using mtp::Request;
using mtp::Session;
using mtp::SqlParam;
using mtp::SqlRow;

namespace {

const std::string kDefer = "defer smtp traffic quota has been exceeded";
const std::string kUnset = "\x01unset";  // attribute value meaning "not sent by Postfix"

const std::string kDbConnection =
    "connections = { db = { module = \"Sql\"; dsn = \"dbi:SQLite:dbname=:memory:\"; }; };\n";

// The SQLite DDL of Mail::MtPolicyd::Plugin::Accounting 2.05 (no unique index, INT counters).
std::string perlAcctDdl(const std::string& table) {
    return "CREATE TABLE " + table +
           " (\n"
           "    `id` INTEGER PRIMARY KEY AUTOINCREMENT,\n"
           "    `key` VARCHAR(255) NOT NULL,\n"
           "    `time` VARCHAR(255) NOT NULL,\n"
           "    `count` INT UNSIGNED NOT NULL,\n"
           "    `count_rcpt` INT UNSIGNED NOT NULL,\n"
           "    `size` INT UNSIGNED NOT NULL,\n"
           "    `size_rcpt` INT UNSIGNED NOT NULL\n"
           ")";
}

std::string localTime(const std::string& pattern, time_t t) {
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[128];
    size_t n = strftime(buf, sizeof buf, pattern.c_str(), &tm);
    return std::string(buf, n);
}

std::string month() { return localTime("%Y-%m", time(nullptr)); }

struct Host {
    std::string name;
    std::string plugins;
};

// The configuration text: the SQLite connection "db" (unless withDb is false) and one virtual
// host per entry, on ports 12345, 12346, ...
std::string configText(const std::vector<Host>& hosts, bool withDb = true) {
    std::string text = withDb ? kDbConnection : "";
    text += "virtual_hosts = (\n";
    for (size_t i = 0; i < hosts.size(); ++i) {
        text += std::string(i ? ",\n" : "") + "{ name = \"" + hosts[i].name + "\"; port = \"" +
                std::to_string(12345 + i) + "\";\n plugins = (\n" + hosts[i].plugins + "\n); }";
    }
    return text + "\n);\n";
}

std::unique_ptr<Config> load(const std::string& text) {
    return Config::fromTree(mtp::readLibconfigString(text, "test.conf"), "test.conf");
}

// A configuration with its database, its worker-like session store and helpers to send
// messages and to look at the tables.
class Env {
  public:
    std::unique_ptr<Config> cfg;
    std::shared_ptr<mtp::SqlConnection> db;
    mtp::SessionStore sessions{300, 10000};

    explicit Env(const std::vector<Host>& hosts) : cfg(load(configText(hosts))) {
        CPPUNIT_ASSERT_EQUAL(size_t(1), cfg->connections.size());
        db = cfg->connections[0].sql;
        CPPUNIT_ASSERT(db);
        cfg->startPlugins();
    }
    // One vhost "t".
    explicit Env(const std::string& plugins) : Env(std::vector<Host>{{"t", plugins}}) {}

    // Sends one request to `host`. Unless attrs names an "instance", every call is a new
    // message with its own instance (and so its own session).
    ChainResult send(const std::string& host, const Request::Attrs& attrs = {},
                     Session* session = nullptr) {
        Request r;
        r.attrs = {{"request", "smtpd_access_policy"},
                   {"protocol_state", "END-OF-MESSAGE"},
                   {"protocol_name", "ESMTP"},
                   {"client_address", "192.168.0.1"},
                   {"client_name", "mail.example.com"},
                   {"sender", "alice@example.com"},
                   {"recipient", "bob@example.net"},
                   {"recipient_count", "1"},
                   {"size", "1000"},
                   {"instance", "msg." + std::to_string(++seq_)}};
        for (const auto& kv : attrs) {
            if (kv.second == kUnset)
                r.attrs.erase(kv.first);
            else
                r.attrs[kv.first] = kv.second;
        }
        r.session = session ? session : &sessions.acquire(r.get("instance"), time(nullptr));
        r.vhost = cfg->vhostByName(host);
        CPPUNIT_ASSERT_MESSAGE("no vhost " + host, r.vhost);
        r.vhost->chain.run(r);
        return r.result;
    }
    ChainResult send(const Request::Attrs& attrs = {}) { return send("t", attrs); }

    std::vector<SqlRow> select(const std::string& sql, const std::vector<SqlParam>& params = {}) {
        return db->execute(sql, params).rows;
    }
    // The first column of the first row: "<no row>", "<null>" or "<no table>" otherwise.
    std::string cell(const std::string& sql, const std::vector<SqlParam>& params = {}) {
        try {
            auto rows = select(sql, params);
            if (rows.empty() || rows[0].empty()) return "<no row>";
            return rows[0][0] ? *rows[0][0] : "<null>";
        } catch (const mtp::DbNoSuchTable&) {
            return "<no table>";
        }
    }
    // Sum of a counter over every time bucket of `key` (a month boundary during the test
    // cannot split the expected value); "<no table>" when the table does not exist.
    std::string total(const std::string& table, const std::string& key, const std::string& column) {
        std::string v = cell("SELECT SUM(`" + column + "`) FROM `" + table + "` WHERE `key` = ?",
                             {SqlParam::of(key)});
        return v == "<null>" ? "0" : v;
    }
    // Number of rows of `key` ("<no table>" when there is no table).
    std::string rows(const std::string& table, const std::string& key) {
        return cell("SELECT COUNT(*) FROM `" + table + "` WHERE `key` = ?", {SqlParam::of(key)});
    }
    bool tableExists(const std::string& table) { return db->tableExists(table); }
    void exec(const std::string& sql) { db->executeDirect(sql); }

  private:
    int seq_ = 0;
};

std::string action(const ChainResult& r) { return r.actions.empty() ? "<none>" : r.actions[0]; }
std::string var(const Session& s, const std::string& k) { return s.get(k) ? *s.get(k) : "<unset>"; }

// Expects the configuration to be refused with a ConfigError whose message contains `needle`.
void assertConfigError(const std::string& text, const std::string& needle) {
    try {
        load(text);
    } catch (const mtp::ConfigError& e) {
        std::string msg = e.what();
        CPPUNIT_ASSERT_MESSAGE("message \"" + msg + "\" lacks \"" + needle + "\"",
                               msg.find(needle) != std::string::npos);
        return;
    }
    CPPUNIT_FAIL("configuration accepted, expected a ConfigError containing \"" + needle + "\"");
}

const std::string kAcctIp =
    "{ name = \"AcctIP\"; module = \"Accounting\"; fields = \"client_address\"; }";

std::string quota(const std::string& extra) {
    return "{ name = \"QuotaIP\"; module = \"Quota\"; field = \"client_address\"; metric = "
           "\"count\"; " +
           extra + " }";
}

// Upstream t/plugin-accounting-quota.t: 11 messages from 192.168.0.1 at the RCPT stage
// (recipient_count 0) of various sizes totalling 147081, and 10 messages from 192.168.2.1
// with 10 recipients and 13371 bytes each.
const long long kSizes[11] = {100000, 20000, 10000, 5000, 4000, 3000, 2000, 1500, 1000, 500, 81};

void sendUpstreamTraffic(Env& env, const std::string& host) {
    for (long long size : kSizes) {
        ChainResult r = env.send(host, {{"client_address", "192.168.0.1"},
                                        {"recipient_count", "0"},
                                        {"size", std::to_string(size)}});
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
    }
    for (int i = 0; i < 10; ++i) {
        ChainResult r = env.send(
            host,
            {{"client_address", "192.168.2.1"}, {"recipient_count", "10"}, {"size", "13371"}});
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
    }
}

}  // namespace

class TestAccounting : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestAccounting);
    // Accounting
    CPPUNIT_TEST(testUpstreamCounters);
    CPPUNIT_TEST(testMetricDefaults);
    CPPUNIT_TEST(testOncePerInstance);
    CPPUNIT_TEST(testOncePerInstanceAcrossWorkers);
    CPPUNIT_TEST(testInstanceDedupOff);
    CPPUNIT_TEST(testFailedCountRecordsNoInstance);
    CPPUNIT_TEST(testOldInstancesForgotten);
    CPPUNIT_TEST(testEmptyInstanceCountsEveryRequest);
    CPPUNIT_TEST(testSeveralFields);
    CPPUNIT_TEST(testBlankFieldValuesSkipped);
    CPPUNIT_TEST(testMonthBucket);
    CPPUNIT_TEST(testSecondBuckets);
    CPPUNIT_TEST(testTablePrefixAndUniqueKey);
    CPPUNIT_TEST(testPerlTableContinues);
    CPPUNIT_TEST(testPerlTableWithDuplicates);
    CPPUNIT_TEST(testDisabled);
    CPPUNIT_TEST(testUcEnabled);
    CPPUNIT_TEST(testAccountingConfigErrors);
    // Quota
    CPPUNIT_TEST(testQuotaUpstream);
    CPPUNIT_TEST(testQuotaMetrics);
    CPPUNIT_TEST(testQuotaMissingTable);
    CPPUNIT_TEST(testQuotaMissingRow);
    CPPUNIT_TEST(testQuotaBlankField);
    CPPUNIT_TEST(testQuotaDisabled);
    CPPUNIT_TEST(testQuotaUcThreshold);
    CPPUNIT_TEST(testQuotaUcAction);
    CPPUNIT_TEST(testQuotaUcMetric);
    CPPUNIT_TEST(testQuotaUcField);
    CPPUNIT_TEST(testQuotaInvalidUcMetricFailsRequest);
    CPPUNIT_TEST(testQuotaConfigErrors);
    CPPUNIT_TEST(testQuotaBeforeAccounting);
    // Values longer than the key column
    CPPUNIT_TEST(testFitKey);
    CPPUNIT_TEST(testLongSenderCounted);
    CPPUNIT_TEST(testLongSendersDifferingLate);
    CPPUNIT_TEST(testLongSenderWarnsOnce);
    CPPUNIT_TEST(testQuotaLongSender);
    CPPUNIT_TEST(testLongInstanceDeduped);
    // SqlUserConfig
    CPPUNIT_TEST(testUserConfigString);
    CPPUNIT_TEST(testUserConfigValueTypes);
    CPPUNIT_TEST(testUserConfigNoRow);
    CPPUNIT_TEST(testUserConfigNotAnObject);
    CPPUNIT_TEST(testUserConfigBlankField);
    CPPUNIT_TEST(testUserConfigRelayQuery);
    CPPUNIT_TEST(testUserConfigConfigErrors);
    CPPUNIT_TEST(testHowtoChain);
    CPPUNIT_TEST(testApplyUserConfigJson);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override {
        savedLevel_ = mtp::log::g_level;
        mtp::log::g_level = -1;  // the plugins log every skip at their log_level
    }
    void tearDown() override { mtp::log::g_level = savedLevel_; }

    // --- Accounting -----------------------------------------------------------------------

    void testUpstreamCounters() {
        Env env(kAcctIp);
        sendUpstreamTraffic(env, "t");
        const std::string t = "acct_client_address";
        CPPUNIT_ASSERT(env.tableExists(t));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.rows(t, "192.168.0.1"));
        CPPUNIT_ASSERT_EQUAL(std::string("11"), env.total(t, "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("147081"), env.total(t, "192.168.0.1", "size"));
        CPPUNIT_ASSERT_EQUAL(std::string("11"), env.total(t, "192.168.0.1", "count_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("147081"), env.total(t, "192.168.0.1", "size_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.rows(t, "192.168.2.1"));
        CPPUNIT_ASSERT_EQUAL(std::string("10"), env.total(t, "192.168.2.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("100"), env.total(t, "192.168.2.1", "count_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("1337100"), env.total(t, "192.168.2.1", "size_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("133710"), env.total(t, "192.168.2.1", "size"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"),
                             env.cell("SELECT COUNT(*) FROM acct_client_address"));
    }

    void testMetricDefaults() {
        // No size and no recipient_count: count 1, count_rcpt 1, sizes 0.
        Env env(kAcctIp);
        env.send({{"client_address", "10.0.0.1"}, {"size", kUnset}, {"recipient_count", kUnset}});
        const std::string t = "acct_client_address";
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, "10.0.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, "10.0.0.1", "count_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("0"), env.total(t, "10.0.0.1", "size"));
        CPPUNIT_ASSERT_EQUAL(std::string("0"), env.total(t, "10.0.0.1", "size_rcpt"));
        // Empty recipient_count counts as one recipient; size_rcpt = size * recipients.
        env.send({{"client_address", "10.0.0.2"}, {"size", "500"}, {"recipient_count", ""}});
        env.send({{"client_address", "10.0.0.2"}, {"size", "100"}, {"recipient_count", "3"}});
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total(t, "10.0.0.2", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("4"), env.total(t, "10.0.0.2", "count_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("600"), env.total(t, "10.0.0.2", "size"));
        CPPUNIT_ASSERT_EQUAL(std::string("800"), env.total(t, "10.0.0.2", "size_rcpt"));
    }

    void testOncePerInstance() {
        Env env(kAcctIp);
        const std::string t = "acct_client_address";
        // The same message (instance) asked three times, e.g. RCPT, DATA and END-OF-MESSAGE.
        for (int i = 0; i < 3; ++i) env.send({{"instance", "AAA111"}, {"size", "100"}});
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("100"), env.total(t, "192.168.0.1", "size"));
        // The same Session object, explicitly.
        Session s;
        for (int i = 0; i < 3; ++i) env.send("t", {{"instance", "BBB222"}}, &s);
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total(t, "192.168.0.1", "count"));
        // Another message counts again.
        env.send({{"instance", "CCC333"}});
        CPPUNIT_ASSERT_EQUAL(std::string("3"), env.total(t, "192.168.0.1", "count"));
        env.send({{"instance", "AAA111"}});
        CPPUNIT_ASSERT_EQUAL(std::string("3"), env.total(t, "192.168.0.1", "count"));
    }

    void testOncePerInstanceAcrossWorkers() {
        // A worker killed after its update but before its answer: Postfix resends the message
        // (same instance) and another worker, with a session of its own, gets it. The
        // instance recorded with the counts keeps it from being counted twice.
        Env env(kAcctIp);
        const std::string t = "acct_client_address";
        Session first, second, third;
        env.send("t", {{"instance", "AAA111"}, {"size", "100"}, {"recipient_count", "2"}}, &first);
        env.send("t", {{"instance", "AAA111"}, {"size", "100"}, {"recipient_count", "2"}}, &second);
        env.send("t", {{"instance", "AAA111"}, {"size", "100"}, {"recipient_count", "2"}}, &third);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total(t, "192.168.0.1", "count_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("200"), env.total(t, "192.168.0.1", "size_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             env.cell("SELECT COUNT(*) FROM acct_instances WHERE plugin = 'AcctIP' AND "
                                      "instance = 'AAA111'"));
        // Another message still counts; two plugins count the same message independently.
        Env two("{ name = \"A\"; module = \"Accounting\"; fields = \"client_address\"; },\n"
                "{ name = \"B\"; module = \"Accounting\"; fields = \"sender\"; }");
        Session a, b, c;
        two.send("t", {{"instance", "X1"}}, &a);
        two.send("t", {{"instance", "X1"}}, &b);
        two.send("t", {{"instance", "X2"}}, &c);
        CPPUNIT_ASSERT_EQUAL(std::string("2"), two.total(t, "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), two.total("acct_sender", "alice@example.com", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("4"), two.cell("SELECT COUNT(*) FROM acct_instances"));
    }

    void testInstanceDedupOff() {
        Env env("{ name = \"AcctIP\"; module = \"Accounting\"; fields = \"client_address\"; "
                "instance_dedup = false; }");
        Session first, second;
        env.send("t", {{"instance", "AAA111"}}, &first);
        env.send("t", {{"instance", "AAA111"}}, &first);   // the same worker still remembers it
        env.send("t", {{"instance", "AAA111"}}, &second);  // another worker does not
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total("acct_client_address", "192.168.0.1", "count"));
        CPPUNIT_ASSERT(!env.tableExists("acct_instances"));
    }

    void testFailedCountRecordsNoInstance() {
        // The counts and the instance are written in one transaction: when the update fails,
        // the instance is not recorded either, and the resent message is counted then.
        Env env("{ name = \"AcctIP\"; module = \"Accounting\"; fields = \"client_address\"; "
                "instance_table = \"counted\"; }");
        const std::string t = "acct_client_address";
        env.send({{"instance", "warmup"}});  // creates the tables
        env.exec("CREATE TRIGGER fail BEFORE UPDATE ON acct_client_address BEGIN "
                 "SELECT RAISE(ABORT, 'disk full'); END");
        Session first;
        CPPUNIT_ASSERT_THROW(env.send("t", {{"instance", "BBB222"}}, &first), mtp::PluginError);
        CPPUNIT_ASSERT_EQUAL(std::string("0"),
                             env.cell("SELECT COUNT(*) FROM counted WHERE instance = 'BBB222'"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, "192.168.0.1", "count"));
        env.exec("DROP TRIGGER fail");
        Session resent;
        env.send("t", {{"instance", "BBB222"}}, &resent);
        env.send("t", {{"instance", "BBB222"}}, &first);
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total(t, "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             env.cell("SELECT COUNT(*) FROM counted WHERE instance = 'BBB222'"));
    }

    void testOldInstancesForgotten() {
        Env env("{ name = \"AcctIP\"; module = \"Accounting\"; fields = \"client_address\"; "
                "instance_retention = 3600; }");
        // A table left by earlier runs, as the plugin creates it.
        env.exec("CREATE TABLE acct_instances (`plugin` VARCHAR(64) NOT NULL, `instance` VARCHAR(128) NOT NULL,"
                 " `time` INTEGER NOT NULL, PRIMARY KEY (`plugin`, `instance`))");
        long long now = static_cast<long long>(time(nullptr));
        env.exec("INSERT INTO acct_instances VALUES ('AcctIP', 'old', " + std::to_string(now - 7200) + ")");
        env.exec("INSERT INTO acct_instances VALUES ('AcctIP', 'recent', " + std::to_string(now - 600) + ")");
        // The first message purges what is older than instance_retention, and only that.
        env.send({{"instance", "first"}});
        CPPUNIT_ASSERT_EQUAL(std::string("0"), env.cell("SELECT COUNT(*) FROM acct_instances WHERE instance = 'old'"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.cell("SELECT COUNT(*) FROM acct_instances"));
        // Purging runs at most once a minute: a row that ages meanwhile stays until then.
        env.exec("INSERT INTO acct_instances VALUES ('AcctIP', 'old2', " + std::to_string(now - 7200) + ")");
        env.send({{"instance", "second"}});
        CPPUNIT_ASSERT_EQUAL(std::string("4"), env.cell("SELECT COUNT(*) FROM acct_instances"));
        assertConfigError(configText({{"t", "{ name = \"A\"; module = \"Accounting\"; "
                                            "fields = \"client_address\"; instance_retention = 5; }"}}),
                          "instance_retention");
        assertConfigError(configText({{"t", "{ name = \"A\"; module = \"Accounting\"; "
                                            "fields = \"client_address\"; instance_table = \"a-b\"; }"}}),
                          "instance_table");
    }

    void testEmptyInstanceCountsEveryRequest() {
        // Without an instance there is no session to remember the message: mtpolicyd without
        // a session cache counts every request.
        Env env(kAcctIp);
        for (int i = 0; i < 3; ++i) env.send({{"instance", ""}});
        CPPUNIT_ASSERT_EQUAL(std::string("3"),
                             env.total("acct_client_address", "192.168.0.1", "count"));
        for (int i = 0; i < 2; ++i) env.send({{"instance", kUnset}});
        CPPUNIT_ASSERT_EQUAL(std::string("5"),
                             env.total("acct_client_address", "192.168.0.1", "count"));
    }

    void testSeveralFields() {
        Env env(
            "{ name = \"Acct\"; module = \"Accounting\"; fields = \"client_address, "
            "sasl_username\"; }");
        env.send({{"client_address", "192.168.0.1"}, {"sasl_username", "alice"}, {"size", "10"}});
        env.send({{"client_address", "192.168.0.2"}, {"sasl_username", "alice"}, {"size", "20"}});
        env.send({{"client_address", "192.168.0.1"}, {"size", "40"}});  // no sasl_username
        CPPUNIT_ASSERT(env.tableExists("acct_client_address"));
        CPPUNIT_ASSERT(env.tableExists("acct_sasl_username"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"),
                             env.total("acct_client_address", "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("50"),
                             env.total("acct_client_address", "192.168.0.1", "size"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             env.total("acct_client_address", "192.168.0.2", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total("acct_sasl_username", "alice", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("30"), env.total("acct_sasl_username", "alice", "size"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.cell("SELECT COUNT(*) FROM acct_sasl_username"));
    }

    void testBlankFieldValuesSkipped() {
        Env env(
            "{ name = \"Acct\"; module = \"Accounting\"; fields = \"client_address, "
            "sasl_username\"; }");
        env.send({{"sasl_username", ""}});
        env.send({{"sasl_username", "   "}});
        env.send({{"sasl_username", " \t"}});
        CPPUNIT_ASSERT_EQUAL(std::string("3"),
                             env.total("acct_client_address", "192.168.0.1", "count"));
        std::string n = env.cell("SELECT COUNT(*) FROM acct_sasl_username");
        CPPUNIT_ASSERT_MESSAGE(n, n == "0" || n == "<no table>");
        // Blank client_address: nothing counted for it, the other field still is.
        env.send({{"client_address", " "}, {"sasl_username", "bob"}});
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             env.cell("SELECT COUNT(*) FROM acct_client_address"));
        CPPUNIT_ASSERT_EQUAL(std::string("3"),
                             env.total("acct_client_address", "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total("acct_sasl_username", "bob", "count"));
    }

    void testMonthBucket() {
        Env env(kAcctIp);
        std::string before = month();
        env.send();
        std::string after = month();
        std::string stored =
            env.cell("SELECT `time` FROM acct_client_address WHERE `key` = '192.168.0.1'");
        CPPUNIT_ASSERT_MESSAGE(stored, stored == before || stored == after);
        CPPUNIT_ASSERT_EQUAL(size_t(7), stored.size());  // YYYY-MM
    }

    void testSecondBuckets() {
        const std::string pattern = "%Y-%m-%d %H:%M:%S";
        Env env(
            "{ name = \"Acct\"; module = \"Accounting\"; fields = \"client_address\"; time_pattern "
            "= \"" +
            pattern + "\"; }");
        time_t t0 = time(nullptr);
        env.send();
        time_t t1 = time(nullptr);
        std::string first = env.cell("SELECT `time` FROM acct_client_address ORDER BY id LIMIT 1");
        CPPUNIT_ASSERT_MESSAGE(first,
                               first == localTime(pattern, t0) || first == localTime(pattern, t1));
        // Wait for the next second (at most one second) and count again: a new row.
        while (time(nullptr) <= t1) usleep(20000);
        env.send();
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.rows("acct_client_address", "192.168.0.1"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"),
                             env.cell("SELECT COUNT(DISTINCT `time`) FROM acct_client_address"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             env.cell("SELECT MAX(`count`) FROM acct_client_address"));
    }

    void testTablePrefixAndUniqueKey() {
        Env env(
            "{ name = \"Acct\"; module = \"Accounting\"; fields = \"client_address\"; table_prefix "
            "= \"mt_\"; }");
        env.send();
        env.send();
        CPPUNIT_ASSERT(env.tableExists("mt_client_address"));
        CPPUNIT_ASSERT(!env.tableExists("acct_client_address"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"),
                             env.total("mt_client_address", "192.168.0.1", "count"));
        std::string time = env.cell("SELECT `time` FROM mt_client_address");
        // The table has a unique (key, time) constraint: a second row for the bucket is refused.
        CPPUNIT_ASSERT_THROW(
            env.db->execute("INSERT INTO mt_client_address (`key`, `time`, `count`, `count_rcpt`, "
                            "`size`, `size_rcpt`) VALUES (?, ?, 1, 1, 0, 0)",
                            {SqlParam::of(std::string("192.168.0.1")), SqlParam::of(time)}),
            mtp::DbError);
        // Another key or bucket is fine.
        env.db->execute(
            "INSERT INTO mt_client_address (`key`, `time`, `count`, `count_rcpt`, `size`, "
            "`size_rcpt`) "
            "VALUES ('192.168.0.1', '2014-12', 1, 1, 0, 0)",
            {});
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.rows("mt_client_address", "192.168.0.1"));
    }

    void testPerlTableContinues() {
        Env env(kAcctIp);
        const std::string t = "acct_client_address";
        env.exec(perlAcctDdl(t));
        std::string m = month();
        env.db->execute(
            "INSERT INTO acct_client_address (`key`, `time`, `count`, `count_rcpt`, `size`, "
            "`size_rcpt`) "
            "VALUES ('192.168.0.1', ?, 5, 7, 1000, 2000)",
            {SqlParam::of(m)});
        env.db->execute(
            "INSERT INTO acct_client_address (`key`, `time`, `count`, `count_rcpt`, `size`, "
            "`size_rcpt`) "
            "VALUES ('192.168.0.1', '2014-12', 11, 11, 147081, 147081)",
            {});
        env.send({{"recipient_count", "2"}, {"size", "100"}});
        std::vector<SqlParam> cur{SqlParam::of(m)};
        auto now = [&](const std::string& col) {
            return env.cell(
                "SELECT `" + col +
                    "` FROM acct_client_address WHERE `key` = '192.168.0.1' AND `time` = ?",
                cur);
        };
        CPPUNIT_ASSERT_EQUAL(std::string("6"), now("count"));
        CPPUNIT_ASSERT_EQUAL(std::string("9"), now("count_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("1100"), now("size"));
        CPPUNIT_ASSERT_EQUAL(std::string("2200"), now("size_rcpt"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.rows(t, "192.168.0.1"));
        // The old month is untouched.
        CPPUNIT_ASSERT_EQUAL(
            std::string("11"),
            env.cell("SELECT `count` FROM acct_client_address WHERE `time` = '2014-12'"));
        // A new key gets its row in the Perl table.
        env.send({{"client_address", "192.168.0.9"}});
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, "192.168.0.9", "count"));
        // The columns are those of the Perl DDL (the table was not rebuilt).
        CPPUNIT_ASSERT_EQUAL(
            std::string("7"),
            env.cell("SELECT COUNT(*) FROM pragma_table_info('acct_client_address')"));
        CPPUNIT_ASSERT_EQUAL(
            std::string("INT UNSIGNED"),
            env.cell(
                "SELECT type FROM pragma_table_info('acct_client_address') WHERE name = 'count'"));
    }

    void testPerlTableWithDuplicates() {
        // Two Perl workers raced and inserted the same (key, time) twice; no unique index can
        // be added, yet counting goes on (as mtpolicyd's UPDATE did: every duplicate counts).
        Env env(
            "{ name = \"QuotaIP\"; module = \"Quota\"; field = \"client_address\"; metric = "
            "\"count\"; threshold = 3; "
            "},\n" +
            kAcctIp);
        env.exec(perlAcctDdl("acct_client_address"));
        std::string m = month();
        for (int i = 0; i < 2; ++i)
            env.db->execute(
                "INSERT INTO acct_client_address (`key`, `time`, `count`, `count_rcpt`, `size`, "
                "`size_rcpt`) "
                "VALUES ('192.168.0.1', ?, 1, 1, 10, 10)",
                {SqlParam::of(m)});
        ChainResult r = env.send({{"size", "5"}});
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.rows("acct_client_address", "192.168.0.1"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"),
                             env.cell("SELECT MIN(`count`) FROM acct_client_address"));
        CPPUNIT_ASSERT_EQUAL(std::string("15"),
                             env.cell("SELECT MIN(`size`) FROM acct_client_address"));
        // A key without a row is inserted by the same path.
        env.send({{"client_address", "192.168.0.2"}});
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             env.total("acct_client_address", "192.168.0.2", "count"));
        // And Quota sees the counter (2 < 3, then 3 >= 3).
        env.send();
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send()));
    }

    void testDisabled() {
        Env env(
            "{ name = \"Acct\"; module = \"Accounting\"; fields = \"client_address\"; enabled = "
            "false; }");
        env.send();
        env.send();
        std::string n = env.cell("SELECT COUNT(*) FROM acct_client_address");
        CPPUNIT_ASSERT_MESSAGE(n, n == "0" || n == "<no table>");
    }

    void testUcEnabled() {
        Env env(
            "{ name = \"Acct\"; module = \"Accounting\"; fields = \"client_address\"; uc_enabled = "
            "\"acct\"; }");
        const std::string t = "acct_client_address";
        Session off;
        off.set("acct", "off");
        env.send("t", {}, &off);
        std::string n = env.cell("SELECT COUNT(*) FROM acct_client_address");
        CPPUNIT_ASSERT_MESSAGE(n, n == "0" || n == "<no table>");
        Session on;
        on.set("acct", "on");
        env.send("t", {}, &on);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, "192.168.0.1", "count"));
        // Without the session variable the configured value (enabled) applies.
        env.send();
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total(t, "192.168.0.1", "count"));
    }

    void testAccountingConfigErrors() {
        assertConfigError(
            configText(
                {{"t", "{ name = \"A\"; module = \"Accounting\"; fields = \"client-address\"; }"}}),
            "fields");
        assertConfigError(
            configText({{"t",
                         "{ name = \"A\"; module = \"Accounting\"; fields = \"client_address\"; "
                         "table_prefix = \"acct-\"; }"}}),
            "[A-Za-z0-9_]");
        assertConfigError(configText({{"t", kAcctIp}}, false), "no connection 'db' configured");
        assertConfigError(configText({{"t", "{ name = \"A\"; module = \"Accounting\"; }"}}),
                          "fields");
    }

    // --- Quota ----------------------------------------------------------------------------

    void testQuotaUpstream() {
        Env env(std::vector<Host>{{"acct", kAcctIp},
                                  {"q1000", quota("threshold = 1000;")},
                                  {"q11", quota("threshold = 11;")},
                                  {"q12", quota("threshold = 12;")}});
        sendUpstreamTraffic(env, "acct");
        ChainResult r = env.send("q1000", {{"client_address", "192.168.0.1"}});
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
        CPPUNIT_ASSERT(!r.abort);
        r = env.send("q11", {{"client_address", "192.168.0.1"}});
        CPPUNIT_ASSERT_EQUAL(kDefer, action(r));
        CPPUNIT_ASSERT(r.abort);
        CPPUNIT_ASSERT_EQUAL(size_t(1), r.actions.size());
        r = env.send("q12", {{"client_address", "192.168.0.1"}});
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
        // 192.168.2.1 has count 10.
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"),
                             action(env.send("q11", {{"client_address", "192.168.2.1"}})));
        // Quota never counts.
        CPPUNIT_ASSERT_EQUAL(std::string("11"),
                             env.total("acct_client_address", "192.168.0.1", "count"));
    }

    void testQuotaMetrics() {
        auto q = [](const std::string& metric, long long threshold) {
            return "{ name = \"Q\"; module = \"Quota\"; field = \"client_address\"; metric = \"" +
                   metric + "\"; threshold = " + std::to_string(threshold) + "; }";
        };
        Env env(std::vector<Host>{{"acct", kAcctIp},
                                  {"rcpt_at", q("count_rcpt", 100)},
                                  {"rcpt_over", q("count_rcpt", 101)},
                                  {"size_at", q("size", 133710)},
                                  {"size_over", q("size", 133711)},
                                  {"srcpt_at", q("size_rcpt", 1337100)},
                                  {"srcpt_over", q("size_rcpt", 1337101)}});
        sendUpstreamTraffic(env, "acct");
        const Request::Attrs ip{{"client_address", "192.168.2.1"}};
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("rcpt_at", ip)));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("rcpt_over", ip)));
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("size_at", ip)));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("size_over", ip)));
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("srcpt_at", ip)));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("srcpt_over", ip)));
        // 192.168.0.1: count_rcpt 11, size 147081.
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"),
                             action(env.send("rcpt_at", {{"client_address", "192.168.0.1"}})));
        CPPUNIT_ASSERT_EQUAL(kDefer,
                             action(env.send("size_at", {{"client_address", "192.168.0.1"}})));
    }

    void testQuotaMissingTable() {
        Env env(quota("threshold = 1;"));
        ChainResult r;
        CPPUNIT_ASSERT_NO_THROW(r = env.send());
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
        CPPUNIT_ASSERT(!r.abort);
        // Quota does not create the table.
        CPPUNIT_ASSERT(!env.tableExists("acct_client_address"));
    }

    void testQuotaMissingRow() {
        Env env(std::vector<Host>{
            {"acct", kAcctIp}, {"q1", quota("threshold = 1;")}, {"q0", quota("threshold = 0;")}});
        env.send("acct", {{"client_address", "192.168.0.1"}});
        // 192.168.0.7 has no row: its count is 0.
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"),
                             action(env.send("q1", {{"client_address", "192.168.0.7"}})));
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("q0", {{"client_address", "192.168.0.7"}})));
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("q1", {{"client_address", "192.168.0.1"}})));
        // A row of another bucket does not count.
        env.db->execute(
            "INSERT INTO acct_client_address (`key`, `time`, `count`, `count_rcpt`, `size`, "
            "`size_rcpt`) "
            "VALUES ('192.168.0.8', '2014-12', 500, 500, 0, 0)",
            {});
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"),
                             action(env.send("q1", {{"client_address", "192.168.0.8"}})));
    }

    void testQuotaBlankField() {
        // threshold 0 would fire on any key (0 >= 0): no action proves the check was skipped.
        Env env(quota("threshold = 0;"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send({{"client_address", ""}})));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send({{"client_address", "  "}})));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send({{"client_address", kUnset}})));
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send({{"client_address", "10.1.1.1"}})));
    }

    void testQuotaDisabled() {
        Env env(std::vector<Host>{{"off", quota("threshold = 0; enabled = false;")},
                                  {"uc", quota("threshold = 0; uc_enabled = \"quota\";")}});
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("off", {})));
        Session s;
        s.set("quota", "off");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("uc", {}, &s)));
        s.set("quota", "on");
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("uc", {}, &s)));
    }

    void testQuotaUcThreshold() {
        Env env(std::vector<Host>{
            {"acct", kAcctIp}, {"q", quota("threshold = 1000; uc_threshold = \"quota_count\";")}});
        sendUpstreamTraffic(env, "acct");
        const Request::Attrs ip{{"client_address", "192.168.0.1"}};
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("q", ip)));
        Session s;
        s.set("quota_count", "5");
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("q", ip, &s)));
        s.set("quota_count", "11");
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("q", ip, &s)));
        s.set("quota_count", "12");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("q", ip, &s)));
        s.set("quota_count", "100000");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("q", ip, &s)));
    }

    void testQuotaUcAction() {
        Env env(
            std::vector<Host>{{"acct", kAcctIp},
                              {"q", quota("threshold = 11; uc_action = \"quota_action\";")},
                              {"qa", quota("threshold = 11; action = \"reject monthly limit\";")}});
        sendUpstreamTraffic(env, "acct");
        const Request::Attrs ip{{"client_address", "192.168.0.1"}};
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("q", ip)));
        Session s;
        s.set("quota_action", "defer_if_permit please insert coin");
        ChainResult r = env.send("q", ip, &s);
        CPPUNIT_ASSERT_EQUAL(std::string("defer_if_permit please insert coin"), action(r));
        CPPUNIT_ASSERT(r.abort);
        CPPUNIT_ASSERT_EQUAL(std::string("reject monthly limit"), action(env.send("qa", ip)));
    }

    void testQuotaUcMetric() {
        Env env(std::vector<Host>{{"acct", kAcctIp},
                                  {"q", quota("threshold = 100; uc_metric = \"quota_metric\";")}});
        sendUpstreamTraffic(env, "acct");
        const Request::Attrs ip{{"client_address", "192.168.2.1"}};
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("q", ip)));  // count 10
        Session s;
        s.set("quota_metric", "count_rcpt");  // 100
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("q", ip, &s)));
        s.set("quota_metric", "size");
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("q", ip, &s)));
        s.set("quota_metric", "count");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("q", ip, &s)));
    }

    void testQuotaUcField() {
        Env env(std::vector<Host>{{"acct",
                                   "{ name = \"Acct\"; module = \"Accounting\"; fields = "
                                   "\"client_address, sasl_username\"; }"},
                                  {"q", quota("threshold = 3; uc_field = \"quota_field\";")}});
        for (int i = 1; i <= 3; ++i)
            env.send("acct", {{"client_address", "10.0.0." + std::to_string(i)},
                              {"sasl_username", "alice"}});
        const Request::Attrs req{{"client_address", "10.0.0.1"}, {"sasl_username", "alice"}};
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send("q", req)));  // 10.0.0.1: 1
        Session s;
        s.set("quota_field", "sasl_username");  // alice: 3
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send("q", req, &s)));
        // A field from the session is still checked before it becomes a table name.
        s.set("quota_field", "sasl-username");
        Request::Attrs odd = req;
        odd["sasl-username"] = "alice";
        CPPUNIT_ASSERT_THROW(env.send("q", odd, &s), mtp::PluginError);
        CPPUNIT_ASSERT(env.tableExists("acct_sasl_username"));
    }

    void testQuotaInvalidUcMetricFailsRequest() {
        Env env(std::vector<Host>{
            {"acct", kAcctIp},
            {"q", quota("threshold = 1; uc_metric = \"quota_metric\";")},
            {"qc",
             quota("threshold = 1; uc_metric = \"quota_metric\"; on_error = \"continue\";")}});
        env.send("acct", {});
        Session s;
        s.set("quota_metric", "count` FROM sqlite_master; --");
        CPPUNIT_ASSERT_THROW(env.send("q", {}, &s), mtp::PluginError);
        s.set("quota_metric", "bogus");
        CPPUNIT_ASSERT_THROW(env.send("q", {}, &s), mtp::PluginError);
        // With on_error = continue the request goes on without an action.
        ChainResult r;
        CPPUNIT_ASSERT_NO_THROW(r = env.send("qc", {}, &s));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             env.total("acct_client_address", "192.168.0.1", "count"));
    }

    void testQuotaConfigErrors() {
        auto one = [](const std::string& plugin, bool withDb = true) {
            return configText({{"t", plugin}}, withDb);
        };
        assertConfigError(one("{ name = \"Q\"; module = \"Quota\"; field = \"client_address\"; "
                              "metric = \"bogus\"; threshold = 1; }"),
                          "'metric'");
        assertConfigError(one("{ name = \"Q\"; module = \"Quota\"; field = \"client_address\"; "
                              "metric = \"count; DROP TABLE x\"; "
                              "threshold = 1; }"),
                          "'metric'");
        assertConfigError(one("{ name = \"Q\"; module = \"Quota\"; field = \"client-address\"; "
                              "metric = \"count\"; threshold = 1; }"),
                          "'field'");
        assertConfigError(one("{ name = \"Q\"; module = \"Quota\"; field = \"client_address\"; "
                              "metric = \"count\"; "
                              "threshold = 1; table_prefix = \"a b\"; }"),
                          "[A-Za-z0-9_]");
        assertConfigError(one(quota("threshold = 1;"), false), "no connection 'db' configured");
        assertConfigError(one(quota("threshold = 1; db = \"other\";")),
                          "no connection 'other' configured");
        assertConfigError(
            one("{ name = \"Q\"; module = \"Quota\"; field = \"client_address\"; threshold = 1; }"),
            "metric");
        assertConfigError(one("{ name = \"Q\"; module = \"Quota\"; field = \"client_address\"; "
                              "metric = \"count\"; }"),
                          "threshold");
        assertConfigError(one("{ name = \"Q\"; module = \"Quota\"; field = \"client_address\"; "
                              "metric = \"count\"; threshold = "
                              "\"many\"; }"),
                          "threshold");
    }

    void testQuotaBeforeAccounting() {
        // The how-to order: a deferred message is not counted, because Quota aborts the chain.
        Env env(quota("threshold = 2;") + ",\n" + kAcctIp);
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send()));  // table created here
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send()));
        ChainResult r = env.send();
        CPPUNIT_ASSERT_EQUAL(kDefer, action(r));
        CPPUNIT_ASSERT(r.abort);
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send()));
        CPPUNIT_ASSERT_EQUAL(std::string("2"),
                             env.total("acct_client_address", "192.168.0.1", "count"));
        // Another client is not affected.
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"),
                             action(env.send({{"client_address", "192.168.0.2"}})));
        CPPUNIT_ASSERT_EQUAL(std::string("1"),
                             env.total("acct_client_address", "192.168.0.2", "count"));
    }

    // --- Values longer than the key column ------------------------------------------------

    void testFitKey() {
        using mtp::fitKey;
        // Up to the limit: unchanged (rows written by the Perl mtpolicyd stay valid).
        CPPUNIT_ASSERT_EQUAL(std::string(""), fitKey("", 255));
        CPPUNIT_ASSERT_EQUAL(std::string("alice@example.com"), fitKey("alice@example.com", 255));
        const std::string max(255, 'a');
        CPPUNIT_ASSERT_EQUAL(max, fitKey(max, 255));
        const std::string utf8Max = std::string(253, 'a') + "\xc3\xa9";  // 255 bytes, ends in U+00E9
        CPPUNIT_ASSERT_EQUAL(utf8Max, fitKey(utf8Max, 255));
        // One byte more: the first 200 bytes, "~", 32 hex digits of a hash of the whole value.
        std::string v(256, 'b');
        std::string k = fitKey(v, 255);
        CPPUNIT_ASSERT_EQUAL(size_t(233), k.size());
        CPPUNIT_ASSERT_EQUAL(v.substr(0, 200), k.substr(0, 200));
        CPPUNIT_ASSERT_EQUAL('~', k[200]);
        CPPUNIT_ASSERT_EQUAL(std::string::npos, k.find_first_not_of("0123456789abcdef", 201));
        CPPUNIT_ASSERT_EQUAL(mtp::fnv1a128Hex(v), k.substr(201));
        // Deterministic (the same in every worker and after a restart: fixed test vectors of
        // 128-bit FNV-1a), and the hash covers the whole value.
        CPPUNIT_ASSERT_EQUAL(std::string("6c62272e07bb014262b821756295c58d"), mtp::fnv1a128Hex(""));
        CPPUNIT_ASSERT_EQUAL(std::string("d228cb696f1a8caf78912b704e4a8964"), mtp::fnv1a128Hex("a"));
        CPPUNIT_ASSERT_EQUAL(std::string("343e1662793c64bf6f0d3597ba446f18"), mtp::fnv1a128Hex("foobar"));
        std::string bytes;
        for (int i = 0; i < 1024; ++i) bytes += static_cast<char>(i & 0xff);
        CPPUNIT_ASSERT_EQUAL(std::string("a14176b4fa8be677563f36da8584718d"), mtp::fnv1a128Hex(bytes));
        CPPUNIT_ASSERT_EQUAL(k, fitKey(std::string(256, 'b'), 255));
        std::string w = v;
        w[255] = 'c';
        CPPUNIT_ASSERT(fitKey(w, 255) != k);
        CPPUNIT_ASSERT_EQUAL(k.substr(0, 201), fitKey(w, 255).substr(0, 201));
        // A UTF-8 sequence across byte 200 is left out as a whole: U+00E9 at bytes 199-200 ...
        std::string two = std::string(199, 'a') + "\xc3\xa9" + std::string(100, 'z');
        CPPUNIT_ASSERT_EQUAL(std::string(199, 'a') + "~" + mtp::fnv1a128Hex(two), fitKey(two, 255));
        // ... U+1F600 at bytes 198-201 ...
        std::string four = std::string(198, 'a') + "\xf0\x9f\x98\x80" + std::string(100, 'z');
        CPPUNIT_ASSERT_EQUAL(std::string(198, 'a') + "~" + mtp::fnv1a128Hex(four), fitKey(four, 255));
        // ... and a sequence that ends at byte 200 is kept.
        std::string ends = std::string(198, 'a') + "\xc3\xa9" + std::string(100, 'z');
        CPPUNIT_ASSERT_EQUAL(ends.substr(0, 200), fitKey(ends, 255).substr(0, 200));
        CPPUNIT_ASSERT_EQUAL('~', fitKey(ends, 255)[200]);
        // Invalid UTF-8 is never stored as it is (a utf8mb4 column refuses it: "Incorrect string
        // value", the message deferred on every retry): the prefix ends before the first invalid
        // byte, even in a short value.
        std::string junk(300, '\x80');
        CPPUNIT_ASSERT_EQUAL("~" + mtp::fnv1a128Hex(junk), fitKey(junk, 255));
        std::string latin1 = "j\xf6rg@example.org";  // ISO-8859-1, not UTF-8
        CPPUNIT_ASSERT_EQUAL("j~" + mtp::fnv1a128Hex(latin1), fitKey(latin1, 255));
        CPPUNIT_ASSERT_EQUAL(std::string("j\xc3\xb6rg@example.org"), fitKey("j\xc3\xb6rg@example.org", 255));
        for (const char* bad : {"a\xc0\xaf" "b", "a\xed\xa0\x80" "b", "a\xf4\x90\x80\x80" "b", "a\xe2\x82", "a\xff"})
            CPPUNIT_ASSERT_EQUAL("a~" + mtp::fnv1a128Hex(bad), fitKey(bad, 255));
        CPPUNIT_ASSERT_EQUAL(std::string("\xf0\x9f\x98\x80"), fitKey("\xf0\x9f\x98\x80", 255));
        // Another limit (the 128-byte instance column): 95 bytes, "~", the hash.
        std::string inst(150, 'i');
        CPPUNIT_ASSERT_EQUAL(std::string(95, 'i') + "~" + mtp::fnv1a128Hex(inst), fitKey(inst, 128));
        CPPUNIT_ASSERT_EQUAL(std::string(128, 'i'), fitKey(std::string(128, 'i'), 128));
    }

    // A sender of `n` bytes: "<n>:" and then letters, so that senders of different lengths differ.
    static std::string longSender(size_t n, char fill = 'x') {
        std::string s = std::to_string(n) + ":";
        while (s.size() + 12 < n) s += fill;
        s += "@example.org";
        CPPUNIT_ASSERT_EQUAL(n, s.size());
        return s;
    }

    void testLongSenderCounted() {
        Env env("{ name = \"AcctSender\"; module = \"Accounting\"; fields = \"sender\"; }");
        const std::string t = "acct_sender";
        for (size_t n : {size_t(300), size_t(10000)}) {
            const std::string sender = longSender(n);
            ChainResult r = env.send({{"sender", sender}, {"size", "100"}});
            CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
            env.send({{"sender", sender}, {"size", "50"}, {"recipient_count", "2"}});
            // One row, under a key of at most 255 bytes that starts with the value's first 200.
            auto rows = env.select("SELECT `key`, `count`, `count_rcpt`, `size` FROM acct_sender WHERE `key` LIKE '" +
                                   std::to_string(n) + ":%'");
            CPPUNIT_ASSERT_EQUAL_MESSAGE(std::to_string(n), size_t(1), rows.size());
            const std::string key = *rows[0][0];
            CPPUNIT_ASSERT_MESSAGE(std::to_string(key.size()), key.size() <= 255);
            CPPUNIT_ASSERT_EQUAL(sender.substr(0, 200), key.substr(0, 200));
            CPPUNIT_ASSERT_EQUAL(mtp::fitKey(sender, 255), key);
            CPPUNIT_ASSERT_EQUAL(std::string("2"), *rows[0][1]);
            CPPUNIT_ASSERT_EQUAL(std::string("3"), *rows[0][2]);
            CPPUNIT_ASSERT_EQUAL(std::string("150"), *rows[0][3]);
        }
        // A value of exactly 255 bytes is stored as it is.
        const std::string max = longSender(255);
        env.send({{"sender", max}});
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, max, "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("3"), env.cell("SELECT COUNT(*) FROM acct_sender"));
        CPPUNIT_ASSERT_EQUAL(std::string("255"), env.cell("SELECT MAX(LENGTH(`key`)) FROM acct_sender"));
    }

    void testLongSendersDifferingLate() {
        // Two senders with the same first 289 bytes: two rows (the hash is of the whole value).
        Env env("{ name = \"AcctSender\"; module = \"Accounting\"; fields = \"sender\"; }");
        std::string a = longSender(300), b = a;
        b[289] = 'y';
        env.send({{"sender", a}});
        env.send({{"sender", a}});
        env.send({{"sender", b}});
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.cell("SELECT COUNT(*) FROM acct_sender"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total("acct_sender", mtp::fitKey(a, 255), "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total("acct_sender", mtp::fitKey(b, 255), "count"));
    }

    void testLongSenderWarnsOnce() {
        std::string logged;
        {
            testhelpers::LogCapture capture(mtp::log::Warning);
            {
                Env env("{ name = \"AcctLong\"; module = \"Accounting\"; fields = \"sender, sasl_username\"; }");
                env.send({{"sender", longSender(10000, 'q')}, {"sasl_username", std::string(300, 'u')}});
                env.send({{"sender", longSender(5000, 'q')}, {"sasl_username", std::string(400, 'u')}});
            }
            logged = capture.text();
        }
        auto count = [&](const std::string& needle) {
            size_t n = 0;
            for (size_t p = logged.find(needle); p != std::string::npos; p = logged.find(needle, p + 1)) ++n;
            return n;
        };
        // Once per field, naming plugin and field; at most 100 bytes of the value.
        CPPUNIT_ASSERT_EQUAL_MESSAGE(logged, size_t(1), count("plugin AcctLong: sender: a value of 10000 bytes"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(logged, size_t(1), count("plugin AcctLong: sasl_username: a value of 300 bytes"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(logged, size_t(2), count("shortened key"));
        CPPUNIT_ASSERT_MESSAGE(logged, logged.find("\"" + longSender(10000, 'q').substr(0, 100) + "...\"") !=
                                           std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(logged, logged.find("qq@example.org") == std::string::npos);
    }

    void testQuotaLongSender() {
        // Quota looks a long value up under the key Accounting counts it under.
        const std::string q = "{ name = \"QuotaSender\"; module = \"Quota\"; field = \"sender\"; "
                              "metric = \"count\"; threshold = 1; }";
        const std::string acct = "{ name = \"AcctSender\"; module = \"Accounting\"; fields = \"sender\"; }";
        Env env(q + ",\n" + acct);
        const std::string sender = longSender(300);
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send({{"sender", sender}})));
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send({{"sender", sender}})));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total("acct_sender", mtp::fitKey(sender, 255), "count"));
        // Another long sender with the same first 200 bytes is not affected.
        std::string other = sender;
        other[250] = 'y';
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(env.send({{"sender", other}})));
        // A row written under the shortened key by another process (same function) is read.
        const std::string big = longSender(10000);
        env.db->execute("INSERT INTO acct_sender (`key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt`) "
                        "VALUES (?, ?, 7, 7, 0, 0)",
                        {SqlParam::of(mtp::fitKey(big, 255)), SqlParam::of(month())});
        CPPUNIT_ASSERT_EQUAL(kDefer, action(env.send({{"sender", big}})));
    }

    void testLongInstanceDeduped() {
        // A 150-byte instance (longer than the 128-byte column) resent to other workers (own
        // sessions): recorded shortened, so the message is still counted once.
        Env env("{ name = \"AcctIP\"; module = \"Accounting\"; fields = \"client_address\"; }");
        const std::string t = "acct_client_address";
        std::string inst(150, 'I');
        Session first, second, third;
        env.send("t", {{"instance", inst}, {"size", "100"}}, &first);
        env.send("t", {{"instance", inst}, {"size", "100"}}, &second);
        env.send("t", {{"instance", inst}, {"size", "100"}}, &third);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.total(t, "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("100"), env.total(t, "192.168.0.1", "size"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), env.cell("SELECT COUNT(*) FROM acct_instances"));
        CPPUNIT_ASSERT_EQUAL(mtp::fitKey(inst, 128), env.cell("SELECT instance FROM acct_instances"));
        // Another long instance that differs only in its last byte is another message.
        std::string other = inst;
        other[149] = 'J';
        Session fourth, fifth;
        env.send("t", {{"instance", other}}, &fourth);
        env.send("t", {{"instance", other}}, &fifth);
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.total(t, "192.168.0.1", "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("2"), env.cell("SELECT COUNT(*) FROM acct_instances"));
        CPPUNIT_ASSERT_EQUAL(std::string("128"), env.cell("SELECT MAX(LENGTH(instance)) FROM acct_instances"));
    }

    // --- SqlUserConfig --------------------------------------------------------------------

    static const char* userConfigDdl() {
        return "CREATE TABLE user_config (id INTEGER PRIMARY KEY AUTOINCREMENT, address "
               "VARCHAR(255) DEFAULT NULL, "
               "config TEXT NOT NULL, UNIQUE (address))";
    }
    static void addUser(Env& env, const std::string& address, const std::string& json) {
        env.db->execute("INSERT INTO user_config (address, config) VALUES (?, ?)",
                        {SqlParam::of(address), SqlParam::of(json)});
    }
    static const std::string& ucPlugin() {
        static const std::string p = "{ name = \"UserConfig\"; module = \"SqlUserConfig\"; }";
        return p;
    }

    void testUserConfigString() {
        Env env(ucPlugin());
        env.exec(userConfigDdl());
        addUser(env, "bob@example.net", "{\"quota_count\":\"100000\"}");
        Session s;
        ChainResult r = env.send("t", {{"recipient", "bob@example.net"}}, &s);
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
        CPPUNIT_ASSERT_EQUAL(std::string("100000"), var(s, "quota_count"));
        // The lookup is by the request's recipient (the default field).
        Session other;
        env.send("t", {{"recipient", "carol@example.net"}}, &other);
        CPPUNIT_ASSERT_EQUAL(std::string("<unset>"), var(other, "quota_count"));
    }

    void testUserConfigValueTypes() {
        Env env(ucPlugin());
        env.exec(userConfigDdl());
        addUser(env, "bob@example.net",
                "{\"quota_count\": 100000, \"ratio\": 2.5, \"greylisting\": true, \"spf\": false, "
                "\"preset\": null, \"nested\": {\"a\": [1, \"x\"]}, \"text\": \"on\"}");
        Session s;
        s.set("preset", "was here");
        s.set("untouched", "keep");
        env.send("t", {{"recipient", "bob@example.net"}}, &s);
        CPPUNIT_ASSERT_EQUAL(std::string("100000"), var(s, "quota_count"));
        CPPUNIT_ASSERT_EQUAL(std::string("2.5"), var(s, "ratio"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), var(s, "greylisting"));
        CPPUNIT_ASSERT_EQUAL(std::string("0"), var(s, "spf"));
        CPPUNIT_ASSERT_EQUAL(std::string("<unset>"), var(s, "preset"));
        CPPUNIT_ASSERT_EQUAL(std::string("{\"a\":[1,\"x\"]}"), var(s, "nested"));
        CPPUNIT_ASSERT_EQUAL(std::string("on"), var(s, "text"));
        CPPUNIT_ASSERT_EQUAL(std::string("keep"), var(s, "untouched"));
    }

    void testUserConfigNoRow() {
        Env env(ucPlugin());
        env.exec(userConfigDdl());
        Session s;
        ChainResult r;
        CPPUNIT_ASSERT_NO_THROW(r = env.send("t", {{"recipient", "nobody@example.net"}}, &s));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
        CPPUNIT_ASSERT_EQUAL(std::string("<unset>"), var(s, "quota_count"));
    }

    void testUserConfigNotAnObject() {
        Env env(ucPlugin());
        env.exec(userConfigDdl());
        addUser(env, "broken@example.net", "{\"quota_count\": ");
        addUser(env, "array@example.net", "[\"quota_count\", 5]");
        addUser(env, "empty@example.net", "");
        addUser(env, "scalar@example.net", "\"quota_count\"");
        for (const char* who : {"broken@example.net", "array@example.net", "empty@example.net",
                                "scalar@example.net"}) {
            Session s;
            ChainResult r;
            CPPUNIT_ASSERT_NO_THROW(r = env.send("t", {{"recipient", who}}, &s));
            CPPUNIT_ASSERT_EQUAL(std::string("<none>"), action(r));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(who, std::string("<unset>"), var(s, "quota_count"));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(who, size_t(0), s.vars.size());
        }
    }

    void testUserConfigBlankField() {
        Env env(ucPlugin());
        env.exec(userConfigDdl());
        addUser(env, "", "{\"quota_count\":\"1\"}");
        addUser(env, " ", "{\"quota_count\":\"2\"}");
        for (const std::string& v : {std::string(""), std::string(" "), kUnset}) {
            Session s;
            CPPUNIT_ASSERT_NO_THROW(env.send("t", {{"recipient", v}}, &s));
            CPPUNIT_ASSERT_EQUAL(std::string("<unset>"), var(s, "quota_count"));
        }
    }

    static void createRelayTables(Env& env) {
        env.exec(
            "CREATE TABLE relay_policies (id INTEGER PRIMARY KEY AUTOINCREMENT, `desc` VARCHAR(64) "
            "NOT NULL, "
            "config TEXT NOT NULL)");
        env.exec(
            "CREATE TABLE relay_hosts (id INTEGER PRIMARY KEY AUTOINCREMENT, client_address "
            "VARCHAR(64) NOT NULL, "
            "relay_policy INTEGER NOT NULL REFERENCES relay_policies (id))");
        env.exec(
            "INSERT INTO relay_policies VALUES (1, 'standard relay host', "
            "'{\"quota_count\":\"3\"}')");
        env.exec(
            "INSERT INTO relay_policies VALUES (2, 'premium relay host', "
            "'{\"quota_count\":\"100\"}')");
        env.exec("INSERT INTO relay_hosts VALUES (NULL, '2604:8d00:0:1::3', 1)");
        env.exec("INSERT INTO relay_hosts VALUES (NULL, '2604:8d00:0:1::4', 2)");
    }

    static std::string relayPlugin() {
        return "{ name = \"QuotaPolicyConfig\"; module = \"SqlUserConfig\";\n"
               "  sql_query = \"SELECT p.config FROM relay_policies p JOIN relay_hosts h ON "
               "(h.relay_policy = p.id) "
               "WHERE h.client_address=?\";\n"
               "  field = \"client_address\"; }";
    }

    void testUserConfigRelayQuery() {
        Env env(relayPlugin());
        createRelayTables(env);
        Session std3, prem, none;
        env.send("t", {{"client_address", "2604:8d00:0:1::3"}}, &std3);
        env.send("t", {{"client_address", "2604:8d00:0:1::4"}}, &prem);
        env.send("t", {{"client_address", "2604:8d00:0:1::5"}}, &none);
        CPPUNIT_ASSERT_EQUAL(std::string("3"), var(std3, "quota_count"));
        CPPUNIT_ASSERT_EQUAL(std::string("100"), var(prem, "quota_count"));
        CPPUNIT_ASSERT_EQUAL(std::string("<unset>"), var(none, "quota_count"));
    }

    void testUserConfigConfigErrors() {
        auto uc = [](const std::string& query) {
            return configText({{"t", "{ name = \"U\"; module = \"SqlUserConfig\"; sql_query = \"" +
                                         query + "\"; }"}});
        };
        assertConfigError(uc("SELECT config FROM user_config WHERE address='x'"), "sql_query");
        assertConfigError(uc("SELECT config FROM user_config WHERE address=? OR address=?"),
                          "sql_query");
        assertConfigError(uc("SELECT config FROM user_config"), "sql_query");
        // A ? inside a quoted string is not a placeholder.
        CPPUNIT_ASSERT_NO_THROW(
            load(uc("SELECT config FROM user_config WHERE address=? AND config <> '?'")));
        assertConfigError(configText({{"t", ucPlugin()}}, false), "no connection 'db' configured");
    }

    void testHowtoChain() {
        // HowtoAccountingQuota: SqlUserConfig -> Quota (uc_threshold) -> Accounting.
        Env env(relayPlugin() + ",\n" +
                "{ name = \"QuotaIP\"; module = \"Quota\"; field = \"client_address\"; metric = "
                "\"count\"; "
                "threshold = 1000; uc_threshold = \"quota_count\"; },\n" +
                kAcctIp);
        createRelayTables(env);
        const std::string standard = "2604:8d00:0:1::3", premium = "2604:8d00:0:1::4",
                          other = "192.0.2.7";
        for (int i = 1; i <= 5; ++i) {
            ChainResult r = env.send({{"client_address", standard}});
            CPPUNIT_ASSERT_EQUAL_MESSAGE("standard message " + std::to_string(i),
                                         std::string(i <= 3 ? "<none>" : kDefer), action(r));
            CPPUNIT_ASSERT_EQUAL_MESSAGE("premium message " + std::to_string(i),
                                         std::string("<none>"),
                                         action(env.send({{"client_address", premium}})));
            CPPUNIT_ASSERT_EQUAL_MESSAGE("other message " + std::to_string(i),
                                         std::string("<none>"),
                                         action(env.send({{"client_address", other}})));
        }
        CPPUNIT_ASSERT_EQUAL(std::string("3"), env.total("acct_client_address", standard, "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("5"), env.total("acct_client_address", premium, "count"));
        CPPUNIT_ASSERT_EQUAL(std::string("5"), env.total("acct_client_address", other, "count"));
    }

    void testApplyUserConfigJson() {
        // The JSON half of SqlUserConfig without a database (tests/fuzz/fuzz_user_config_json
        // fuzzes it): members become variables in order, null erases, anything but an
        // object throws and leaves the session as it was.
        using mtp::plugins::UserConfigJsonError;
        using mtp::plugins::applyUserConfigJson;
        Session s;
        s.set("old", "1");
        s.set("gone", "x");
        applyUserConfigJson("{\"quota_count\": 1e5, \"gone\": null, \"a\": [1, {\"b\": \"\\u00e4\"}], "
                            "\"old\": \"2\", \"t\": true}",
                            s);
        CPPUNIT_ASSERT_EQUAL(size_t(4), s.vars.size());
        CPPUNIT_ASSERT_EQUAL(std::string("old"), s.vars[0].first);
        CPPUNIT_ASSERT_EQUAL(std::string("2"), var(s, "old"));
        CPPUNIT_ASSERT_EQUAL(std::string("100000"), var(s, "quota_count"));
        CPPUNIT_ASSERT_EQUAL(std::string("[1,{\"b\":\"\xc3\xa4\"}]"), var(s, "a"));
        CPPUNIT_ASSERT_EQUAL(std::string("1"), var(s, "t"));
        CPPUNIT_ASSERT_EQUAL(std::string("<unset>"), var(s, "gone"));
        const auto before = s.vars;
        for (const char* bad : {"", "[1]", "\"s\"", "{\"a\": ", "null", "{\"a\" 1}"}) {
            CPPUNIT_ASSERT_THROW_MESSAGE(bad, applyUserConfigJson(bad, s), UserConfigJsonError);
            CPPUNIT_ASSERT_MESSAGE(bad, s.vars == before);
        }
    }

  private:
    int savedLevel_ = 0;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestAccounting);
