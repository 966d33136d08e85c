// Unit tests for the reader of mtpolicyd 2.x configuration files (Config::General syntax,
// src/core/LegacyConfig.cpp): the syntax as Config::General reads it for mtpolicyd (key = value
// and key value, quotes, comments, continuation lines, here-documents, <<include>>, blocks),
// repeated keys and blocks refused like AllowMultiOptions => 'no', what is accepted with a
// warning (<SessionCache>, Memcached/Redis connections, the mtpolicyd 1.x keys) and what is an
// error (unsupported keys, blocks and plugin modules), every error naming file and line; the
// shape of mtpolicyd 2.05's own test configurations (t-data/*.conf); the format detection of
// Config::load; the HowtoAccountingQuota configuration of the mtpolicyd cookbook and the Debian
// default /etc/mtpolicyd/mtpolicyd.conf; the conversion to libconfig (--convert-config) and
// its round trip; a request through a chain loaded from the legacy format.
#include <cppunit/extensions/HelperMacros.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/core/Registry.h"
#include "mtpolicyd/core/Session.h"
#include "mtpolicyd/sql/SqlConnection.h"
#include "mtpolicyd/util/Errors.h"

using mtp::Config;
using mtp::ConfigError;
using mtp::ConfNode;

namespace {

const char* const kFile = "legacy.conf";

// A minimal virtual host, lines 1-7 when it starts the text.
const std::string kVhost =
    "<VirtualHost 12345>\n"       // 1
    "  name = t\n"                // 2
    "  <Plugin a>\n"              // 3
    "    module = Action\n"       // 4
    "    action = reject\n"       // 5
    "  </Plugin>\n"               // 6
    "</VirtualHost>\n";           // 7

struct Loaded {
    std::unique_ptr<Config> cfg;
    std::vector<std::string> warnings;
};

Loaded legacy(const std::string& text, const std::string& name = kFile) {
    Loaded l;
    ConfNode root = mtp::readLegacyString(text, name, &l.warnings);
    l.cfg = Config::fromTree(root, name);
    return l;
}

std::string errorOf(const std::string& text) {
    try {
        legacy(text);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

std::string dumpOf(const Config& c) {
    std::ostringstream os;
    c.dump(os);
    return os.str();
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// Asserts that `text` is refused with a message naming legacy.conf:LINE: and containing `needle`.
#define ASSERT_LEGACY_ERROR(text, line, needle)                                                       \
    do {                                                                                              \
        std::string msg_ = errorOf(text);                                                             \
        CPPUNIT_ASSERT_MESSAGE("no ConfigError for:\n" + std::string(text), !msg_.empty());           \
        std::string where_ = std::string(kFile) + ":" + std::to_string(line) + ":";                   \
        CPPUNIT_ASSERT_MESSAGE("'" + where_ + "' not at the start of: " + msg_, msg_.find(where_) == 0); \
        CPPUNIT_ASSERT_MESSAGE("'" + std::string(needle) + "' not in: " + msg_, contains(msg_, needle)); \
    } while (0)

const mtp::Plugin& plugin(const Config& c, size_t vhost, size_t i) { return *c.vhosts.at(vhost)->chain.plugins.at(i); }

std::string opt(const Config& c, size_t i, const std::string& key) { return plugin(c, 0, i).options().str(key); }

// Every node has a file and a line; list elements have no name, group members have one.
void checkTree(const ConfNode& n, const std::string& path) {
    CPPUNIT_ASSERT_MESSAGE(path + " has no line", n.line > 0);
    CPPUNIT_ASSERT_MESSAGE(path + " has no file", !n.file.empty());
    for (const auto& c : n.children) {
        if (n.kind == ConfNode::Kind::List) CPPUNIT_ASSERT(c.name.empty());
        if (n.kind == ConfNode::Kind::Group) CPPUNIT_ASSERT(!c.name.empty());
        checkTree(c, path + "/" + c.name);
    }
}

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/mtpolicyd-legacy-XXXXXX";
        const char* d = mkdtemp(tmpl);
        CPPUNIT_ASSERT(d != nullptr);
        path = d;
    }
    ~TempDir() {
        for (auto it = files.rbegin(); it != files.rend(); ++it) ::unlink(it->c_str());
        for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) ::rmdir(it->c_str());
        ::rmdir(path.c_str());
    }
    std::string write(const std::string& name, const std::string& text) {
        std::string p = path + "/" + name;
        std::ofstream(p) << text;
        files.push_back(p);
        return p;
    }
    std::string mkdir(const std::string& name) {
        std::string p = path + "/" + name;
        ::mkdir(p.c_str(), 0700);
        dirs.push_back(p);
        return p;
    }
    std::string path;
    std::vector<std::string> files, dirs;
};

// Mail::MtPolicyd::Cookbook::HowtoAccountingQuota, put together as the how-to describes it: the
// second port in the global port list, a MySQL connection, and the accounting virtual host with
// SqlUserConfig, Quota (with uc_threshold) and Accounting, in this order. The first virtual
// host stands for "the default port 12345 virtual host" with plugins this version has.
const std::string kHowto = R"CFG(# mtpolicyd.conf after Mail::MtPolicyd::Cookbook::HowtoAccountingQuota
user=mtpolicyd
group=mtpolicyd
log_level=2
host=127.0.0.1
port="127.0.0.1:12345,127.0.0.1:12346"

min_servers=4
min_spare_servers=4
max_spare_servers=12
max_servers=50
max_requests=1000
keepalive_timeout=0
max_keepalive=0
request_timeout=20

<Connection db>
  module = "Sql"
  dsn = "DBI:mysql:database=mtpolicyd;host=localhost"
  user = "mtpolicyd"
  password = "secret"
</Connection>

<VirtualHost 12345>
	name="reputation"
	<Plugin ScoreReject>
		module = "ScoreAction"
		threshold = 15
		action = "reject sender ip %IP% is blocked (score=%SCORE%%SCORE_DETAIL%)"
	</Plugin>
	<Plugin ScoreTag>
		module = "AddScoreHeader"
		spam_score=5
	</Plugin>
</VirtualHost>

<VirtualHost 12346>
  name="accounting"
  <Plugin QuotaPolicyConfig>
    module = "SqlUserConfig"
    sql_query = "SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id) WHERE h.client_address=?"
    field = "client_address"
  </Plugin>
  <Plugin QuotaIP>
    module = "Quota"
    field = "client_address"
    metric = "count"
    threshold = 1000
    uc_threshold = "quota_count"
    action = "defer you exceeded your monthly limit, please insert coin"
    # time_pattern = "%Y-%m"
    # table_prefix = "acct_"
  </Plugin>
  <Plugin AcctIP>
    module = "Accounting"
    fields = "client_address"
    # time_pattern = "%Y-%m"
    # table_prefix = "acct_"
  </Plugin>
</VirtualHost>
)CFG";

const char* const kDebianConf = "/etc/mtpolicyd/mtpolicyd.conf";

bool readFile(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return true;
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) out.push_back(l);
    return out;
}

std::string trimmed(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\r");
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(" \t\r") - a + 1);
}

// The `module = "X"` value of a line, or "".
std::string moduleOf(const std::string& line) {
    std::string t = trimmed(line);
    if (t.compare(0, 6, "module") != 0) return "";
    size_t q1 = t.find('"'), q2 = t.rfind('"');
    if (q1 == std::string::npos || q2 <= q1) return "";
    return t.substr(q1 + 1, q2 - q1 - 1);
}

}  // namespace

class TestLegacyConfig : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestLegacyConfig);
    CPPUNIT_TEST(testKeyValueForms);
    CPPUNIT_TEST(testQuotesAndEscapes);
    CPPUNIT_TEST(testComments);
    CPPUNIT_TEST(testHashInsideQuotesWarns);
    CPPUNIT_TEST(testContinuationLines);
    CPPUNIT_TEST(testHereDocuments);
    CPPUNIT_TEST(testTreeShapeAndLines);
    CPPUNIT_TEST(testPluginOrderIsFileOrder);
    CPPUNIT_TEST(testNestedPlugins);
    CPPUNIT_TEST(testPortCommaString);
    CPPUNIT_TEST(testRepeatedKeysAndBlocks);
    CPPUNIT_TEST(testBlockErrors);
    CPPUNIT_TEST(testUnsupportedKeys);
    CPPUNIT_TEST(testOldKeysWarn);
    CPPUNIT_TEST(testUpstreamTestConfigStyle);
    CPPUNIT_TEST(testUnknownPluginModules);
    CPPUNIT_TEST(testErrorAboutDefaultNamesBlock);
    CPPUNIT_TEST(testSessionCacheAccepted);
    CPPUNIT_TEST(testConnections);
    CPPUNIT_TEST(testSyntaxErrorsNameLine);
    CPPUNIT_TEST(testIncludes);
    CPPUNIT_TEST(testIncludeErrors);
    CPPUNIT_TEST(testDetection);
    CPPUNIT_TEST(testLoadChoosesReader);
    CPPUNIT_TEST(testHowtoAccountingQuota);
    CPPUNIT_TEST(testHowtoChainRuns);
    CPPUNIT_TEST(testReputationChainRuns);
    CPPUNIT_TEST(testDebianDefaultConfig);
    CPPUNIT_TEST(testConvertRoundTrip);
    CPPUNIT_TEST(testConvertFile);
    CPPUNIT_TEST_SUITE_END();

  public:
    // --- syntax ---------------------------------------------------------------------------

    void testKeyValueForms() {
        auto l = legacy(
            "log_level = 3\n"
            "syslog_ident\tpolicy-x\n"
            "request_timeout=30\n"
            "max_requests   500\n"
            "user = mail user\n" +  // the value is the rest of the line
            kVhost);
        CPPUNIT_ASSERT_EQUAL(3, l.cfg->logLevel);
        CPPUNIT_ASSERT_EQUAL(std::string("policy-x"), l.cfg->syslogIdent);
        CPPUNIT_ASSERT_EQUAL(30, l.cfg->requestTimeout);
        CPPUNIT_ASSERT_EQUAL(500LL, l.cfg->maxRequests);
        CPPUNIT_ASSERT_EQUAL(std::string("mail user"), l.cfg->user);
        CPPUNIT_ASSERT(l.warnings.empty());
        // "key value = x": the first blank splits (Config::General's split /\s*=\s*|\s+/).
        auto k = legacy("syslog_ident a = b\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(std::string("a = b"), k.cfg->syslogIdent);
        // An empty value after '=' is an empty string; a key alone is an error.
        auto e = legacy("syslog_facility = mail\npid_file =\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(std::string(""), e.cfg->pidFile);
        ASSERT_LEGACY_ERROR("log_level = 2\npid_file\n" + kVhost, 2, "'pid_file' has no value");
    }

    void testQuotesAndEscapes() {
        auto l = legacy(
            "<VirtualHost 12345>\n"
            "  name = \"t x\"\n"
            "  <Plugin a>\n"
            "    module = \"Action\"\n"
            "    action = \"reject  spaced \\\"quoted\\\" out\"\n"  // inner \" unescaped
            "  </Plugin>\n"
            "  <Plugin b>\n"
            "    module = Action\n"
            "    action = 'single' \"half\n"  // single quotes and a lone quote stay
            "  </Plugin>\n"
            "  <Plugin c>\n"
            "    module = Action\n"
            "    action = dunno \\# not a comment \\$x \\\\ \\.\n"
            "  </Plugin>\n"
            "</VirtualHost>\n");
        CPPUNIT_ASSERT_EQUAL(std::string("t x"), l.cfg->vhosts[0]->name);
        CPPUNIT_ASSERT_EQUAL(std::string("reject  spaced \"quoted\" out"), opt(*l.cfg, 0, "action"));
        CPPUNIT_ASSERT_EQUAL(std::string("'single' \"half"), opt(*l.cfg, 1, "action"));
        CPPUNIT_ASSERT_EQUAL(std::string("dunno # not a comment $x \\ \\."), opt(*l.cfg, 2, "action"));
        // Regular expressions keep their backslashes (only \$ \\ \" \# are escapes).
        auto r = legacy(
            "<VirtualHost 12345>\n name = t\n <Plugin c>\n  module = Condition\n  key = client_address\n"
            "  re_match = \"^127\\.0\\.0\\.[23]$\"\n  score = 5\n </Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_EQUAL(std::string("^127\\.0\\.0\\.[23]$"), opt(*r.cfg, 0, "re_match"));
    }

    void testComments() {
        auto l = legacy(
            "# a comment\n"
            "   # an indented comment\n"
            "log_level = 3 # trailing comment\n"
            "/* a C comment */\n"
            "/*\n"
            "log_level = 4\n"
            "*/\n"
            "syslog_ident = x /* inline */\n"
            "user = a/*b\n" +  // '/*' after text without '*/' is text (Config::General)
            kVhost);
        CPPUNIT_ASSERT_EQUAL(3, l.cfg->logLevel);
        CPPUNIT_ASSERT_EQUAL(std::string("x"), l.cfg->syslogIdent);
        CPPUNIT_ASSERT_EQUAL(std::string("a/*b"), l.cfg->user);
        CPPUNIT_ASSERT(l.warnings.empty());
        ASSERT_LEGACY_ERROR("log_level = 3\nuser = a*/b\n" + kVhost, 2, "'*/' without a '/*'");
        ASSERT_LEGACY_ERROR("log_level = 3\n/* open\nlog_level = 4\n" + kVhost, 2, "not closed");
    }

    void testHashInsideQuotesWarns() {
        // Config::General cut the line at '#' even inside quotes; this reader keeps the value
        // and says so.
        auto l = legacy(
            "<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n"
            "  action = \"reject see http://example.com/#policy\" # comment\n"
            " </Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject see http://example.com/#policy"), opt(*l.cfg, 0, "action"));
        CPPUNIT_ASSERT_EQUAL(size_t(1), l.warnings.size());
        CPPUNIT_ASSERT_MESSAGE(l.warnings[0], contains(l.warnings[0], "legacy.conf:5:"));
        // An escaped \# means the same in both: no warning.
        auto e = legacy(
            "<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n"
            "  action = \"reject see http://example.com/\\#policy\"\n"
            " </Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject see http://example.com/#policy"), opt(*e.cfg, 0, "action"));
        CPPUNIT_ASSERT(e.warnings.empty());
    }

    void testContinuationLines() {
        auto l = legacy(
            "<VirtualHost 12345>\n"
            "  name = t\n"
            "  <Plugin a>\n"
            "    module = Action\n"
            "    action = reject one \\\n"
            "             two \\\n"
            "      three\n"
            "  </Plugin>\n"
            "</VirtualHost>\n");
        // Config::General strips the blanks at the start of each continued piece.
        CPPUNIT_ASSERT_EQUAL(std::string("reject one two three"), opt(*l.cfg, 0, "action"));
        CPPUNIT_ASSERT_EQUAL(std::string("legacy.conf:5"), plugin(*l.cfg, 0, 0).options().whereOf("action"));
        // An escaped backslash at the end does not continue.
        auto e = legacy("user = a\\\\\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(std::string("a\\"), e.cfg->user);
        ASSERT_LEGACY_ERROR(kVhost + "log_level = \\\n", 8, "continued line");
    }

    void testHereDocuments() {
        auto l = legacy(
            "<VirtualHost 12345>\n"                  // 1
            "  name = t\n"                           // 2
            "  <Plugin cfg>\n"                       // 3
            "    module = SqlUserConfig\n"           // 4
            "    sql_query <<EOT\n"                  // 5
            "SELECT config FROM user_config\n"       // 6
            "  WHERE address = ? # not a comment\n"  // 7
            "EOT\n"                                  // 8
            "  </Plugin>\n"                          // 9
            "  <Plugin a>\n"                         // 10
            "    module = Action\n"                  // 11
            "    action = <<END\n"                   // 12
            "      reject\n"                         // 13
            "        indented\n"                     // 14
            "      END\n"                            // 15
            "  </Plugin>\n"                          // 16
            "</VirtualHost>\n"
            "<Connection db>\n module = Sql\n dsn = dbi:SQLite:dbname=:memory:\n</Connection>\n");
        CPPUNIT_ASSERT_EQUAL(std::string("SELECT config FROM user_config\n  WHERE address = ? # not a comment"),
                             opt(*l.cfg, 0, "sql_query"));
        CPPUNIT_ASSERT_EQUAL(std::string("legacy.conf:5"), plugin(*l.cfg, 0, 0).options().whereOf("sql_query"));
        // An indented end marker removes its indentation from every line.
        CPPUNIT_ASSERT_EQUAL(std::string("reject\n  indented"), opt(*l.cfg, 1, "action"));
        ASSERT_LEGACY_ERROR("log_level = 2\nuser <<EOF\nx\n" + kVhost, 2, "no end line 'EOF'");
    }

    // --- structure ------------------------------------------------------------------------

    void testTreeShapeAndLines() {
        std::string text =
            "log_level = 3\n"                 // 1
            "<Connection db>\n"               // 2
            "  module = Sql\n"                // 3
            "  dsn = dbi:SQLite:dbname=:memory:\n"  // 4
            "</Connection>\n" +               // 5
            kVhost;                           // 6-12
        ConfNode root = mtp::readLegacyString(text, kFile);
        checkTree(root, "");
        const ConfNode* conns = root.child("connections");
        CPPUNIT_ASSERT(conns && conns->kind == ConfNode::Kind::Group);
        CPPUNIT_ASSERT_EQUAL(2, conns->line);
        const ConfNode* db = conns->child("db");
        CPPUNIT_ASSERT(db && db->kind == ConfNode::Kind::Group);
        CPPUNIT_ASSERT_EQUAL(4, db->child("dsn")->line);
        const ConfNode* vh = root.child("virtual_hosts");
        CPPUNIT_ASSERT(vh && vh->kind == ConfNode::Kind::List);
        CPPUNIT_ASSERT_EQUAL(size_t(1), vh->children.size());
        const ConfNode& v = vh->children[0];
        CPPUNIT_ASSERT_EQUAL(6, v.line);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), v.child("port")->value);
        CPPUNIT_ASSERT_EQUAL(6, v.child("port")->line);
        CPPUNIT_ASSERT_EQUAL(std::string("t"), v.child("name")->value);
        const ConfNode* plugins = v.child("plugins");
        CPPUNIT_ASSERT(plugins && plugins->kind == ConfNode::Kind::List);
        const ConfNode& p = plugins->children[0];
        CPPUNIT_ASSERT_EQUAL(8, p.line);
        CPPUNIT_ASSERT_EQUAL(std::string("a"), p.child("name")->value);
        CPPUNIT_ASSERT_EQUAL(9, p.child("module")->line);
        CPPUNIT_ASSERT_EQUAL(10, p.child("action")->line);

        // Errors found by the validation name the legacy file and line too.
        ASSERT_LEGACY_ERROR(kVhost + "log_level = 9\n", 8, "log_level");
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n  acton = reject\n"
            " </Plugin>\n</VirtualHost>\n",
            5, "unknown key 'acton'");
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n <Plugin a>\n  module = Action\n  action = reject\n"
                            " </Plugin>\n</VirtualHost>\n",
                            1, "missing required key 'name'");
        // A `name` key in a plugin block wins over the block name, as in mtpolicyd.
        auto n = legacy("<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n  name = b\n"
                        "  action = reject\n </Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_EQUAL(std::string("b"), plugin(*n.cfg, 0, 0).name());
    }

    void testPluginOrderIsFileOrder() {
        std::string text = "<VirtualHost 12345>\n name = t\n";
        const char* names[] = {"zeta", "alpha", "mid", "Beta", "0"};
        for (const char* n : names)
            text += std::string(" <Plugin ") + n + ">\n  module = SetField\n  key = k\n  value = " + n + "\n </Plugin>\n";
        text += "</VirtualHost>\n";
        auto l = legacy(text);
        CPPUNIT_ASSERT_EQUAL(size_t(5), l.cfg->vhosts[0]->chain.plugins.size());
        for (size_t i = 0; i < 5; ++i) CPPUNIT_ASSERT_EQUAL(std::string(names[i]), plugin(*l.cfg, 0, i).name());
        // Virtual hosts keep their order too.
        auto two = legacy("port = 12346,12345\n"
                          "<VirtualHost 12346>\n name = b\n <Plugin a>\n  module = Action\n  action = ok\n"
                          " </Plugin>\n</VirtualHost>\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(std::string("b"), two.cfg->vhosts[0]->name);
        CPPUNIT_ASSERT_EQUAL(std::string("t"), two.cfg->vhosts[1]->name);
    }

    void testNestedPlugins() {
        auto l = legacy(
            "<VirtualHost 12345>\n"
            "  name = t\n"
            "  <Plugin high>\n"
            "    module = ScoreAction\n"
            "    threshold = 5\n"
            "    <Plugin inner>\n"
            "      module = Condition\n"
            "      key = sender\n"
            "      match = x@example.com\n"
            "      <Plugin innermost>\n"
            "        module = Action\n"
            "        action = reject innermost\n"
            "      </Plugin>\n"
            "    </Plugin>\n"
            "    <Plugin second>\n"
            "      module = Action\n"
            "      action = defer\n"
            "    </Plugin>\n"
            "  </Plugin>\n"
            "</VirtualHost>\n");
        const mtp::Chain* nested = plugin(*l.cfg, 0, 0).nestedChain();
        CPPUNIT_ASSERT(nested);
        CPPUNIT_ASSERT_EQUAL(size_t(2), nested->plugins.size());
        CPPUNIT_ASSERT_EQUAL(std::string("inner"), nested->plugins[0]->name());
        CPPUNIT_ASSERT_EQUAL(std::string("second"), nested->plugins[1]->name());
        CPPUNIT_ASSERT(nested->plugins[0]->nestedChain());
        // A module without a nested chain refuses <Plugin> blocks.
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n  action = reject\n"
            "  <Plugin b>\n   module = Action\n   action = dunno\n  </Plugin>\n </Plugin>\n</VirtualHost>\n",
            6, "takes no nested plugins");
        // The same plugin name at another level is another plugin.
        auto same = legacy(
            "<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = ScoreAction\n  threshold = 1\n"
            "  <Plugin a>\n   module = Action\n   action = dunno\n  </Plugin>\n </Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_EQUAL(std::string("a"), plugin(*same.cfg, 0, 0).nestedChain()->plugins[0]->name());
    }

    void testPortCommaString() {
        auto l = legacy("port=\"127.0.0.1:12345,127.0.0.1:12346\"\n" + kVhost +
                        "<VirtualHost 12346>\n name = u\n <Plugin a>\n  module = Action\n  action = ok\n"
                        " </Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_EQUAL(size_t(2), l.cfg->listen.size());
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), l.cfg->listen[0].port);
        CPPUNIT_ASSERT_EQUAL(std::string("12346"), l.cfg->listen[1].port);
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), l.cfg->listen[1].host);
        CPPUNIT_ASSERT(l.cfg->vhostForKey("12346"));
        CPPUNIT_ASSERT(l.cfg->warnings().empty());
        // Blanks around the commas (split /\s*,\s*/), a bare port on `host`, a unix socket.
        auto m = legacy("host = 192.0.2.1\nport = 12345 , /run/m.sock|unix\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(size_t(2), m.cfg->listen.size());
        CPPUNIT_ASSERT_EQUAL(std::string("192.0.2.1"), m.cfg->listen[0].host);
        CPPUNIT_ASSERT_EQUAL(std::string("/run/m.sock"), m.cfg->listen[1].path);
    }

    void testRepeatedKeysAndBlocks() {
        // AllowMultiOptions => 'no': mtpolicyd refuses these at start-up; both lines are named.
        ASSERT_LEGACY_ERROR("log_level = 2\nuser = a\nlog_level = 3\n" + kVhost, 3,
                            "'log_level' is set twice (first at legacy.conf:1)");
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n  action = reject\n"
            "  action = dunno\n </Plugin>\n</VirtualHost>\n",
            6, "first at legacy.conf:5");
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n  action = reject\n </Plugin>\n"
            " <Plugin a>\n  module = Action\n  action = dunno\n </Plugin>\n</VirtualHost>\n",
            7, "<Plugin a> occurs twice (first at legacy.conf:3)");
        ASSERT_LEGACY_ERROR(kVhost + kVhost, 8, "<VirtualHost 12345> occurs twice (first at legacy.conf:1)");
        ASSERT_LEGACY_ERROR("<SessionCache>\n module = None\n</SessionCache>\n<SessionCache>\n module = None\n"
                            "</SessionCache>\n" + kVhost,
                            4, "more than once (first at legacy.conf:1)");
        ASSERT_LEGACY_ERROR("Connection = x\n<Connection db>\n module = Sql\n dsn = dbi:SQLite:dbname=x\n</Connection>\n" +
                                kVhost,
                            2, "both a key (legacy.conf:1) and a block");
        // A repetition inside an included file names that file.
        TempDir d;
        d.write("inc.conf", "log_level = 3\n");
        std::string main = d.write("main.conf", "log_level = 2\n<<include inc.conf>>\n" + kVhost);
        std::string msg;
        try {
            Config::load(main);
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(d.path + "/inc.conf:1:") == 0);
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "first at " + main + ":1"));
    }

    void testBlockErrors() {
        ASSERT_LEGACY_ERROR("<Plugin a>\n module = Action\n action = ok\n</Plugin>\n" + kVhost, 1,
                            "outside of a <VirtualHost PORT> block");
        ASSERT_LEGACY_ERROR("<VirtualHost>\n name = t\n</VirtualHost>\n", 1, "needs a port");
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n name = t\n</VirtualHost>\n", 1,
                            "no <Plugin> defined for <VirtualHost> on port 12345");
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n name = t\n <Plugin>\n  module = Action\n </Plugin>\n</VirtualHost>\n",
                            3, "<Plugin> needs a name");
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n name = t\n <Plugin a>\n  action = ok\n </Plugin>\n</VirtualHost>\n",
                            3, "no module defined for plugin a");
        ASSERT_LEGACY_ERROR("log_level = 2\n<virtualhost 12345>\n name = t\n</virtualhost>\n" + kVhost, 2,
                            "names are case-sensitive: <VirtualHost>");
        ASSERT_LEGACY_ERROR("<Foo>\n x = 1\n</Foo>\n" + kVhost, 1, "unknown block <Foo>");
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n  action = ok\n </VirtualHost>\n"
            "</Plugin>\n",
            6, "</VirtualHost> does not close <Plugin a> (opened at legacy.conf:3)");
        ASSERT_LEGACY_ERROR(kVhost + "</Plugin>\n", 8, "without an opening");
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n name = t\n", 1, "has no </VirtualHost>");
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n name = t\n port = 1\n <Plugin a>\n  module = Action\n"
                            "  action = ok\n </Plugin>\n</VirtualHost>\n",
                            3, "the port is the name of the block");
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n name = t\n <Connection x>\n </Connection>\n</VirtualHost>\n", 3,
                            "not allowed inside <VirtualHost 12345>");
        ASSERT_LEGACY_ERROR("log_level = 1\n<>\n" + kVhost, 2, "not a block");
        // An empty block <Name key/> is a block without content.
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n name = t\n <Plugin a/>\n</VirtualHost>\n", 3,
                            "no module defined for plugin a");
        // End tags are matched without regard to case (Config::General does not check them).
        auto l = legacy("<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n  action = ok\n"
                        " </plugin>\n</virtualhost>\n");
        CPPUNIT_ASSERT_EQUAL(size_t(1), l.cfg->vhosts.size());
        ASSERT_LEGACY_ERROR("log_level = 2\n", 1, "no virtual hosts configured");
    }

    void testUnsupportedKeys() {
        ASSERT_LEGACY_ERROR("log_level = 2\nchroot = /var/run/mtpolicyd\n" + kVhost, 2,
                            "'chroot' of mtpolicyd 2.x is not supported");
        ASSERT_LEGACY_ERROR("program_name = x\n" + kVhost, 1, "'program_name' of mtpolicyd 2.x is not supported");
        ASSERT_LEGACY_ERROR("log_level = 2\nbogus = 1\n" + kVhost, 2, "unknown key 'bogus'");
        ASSERT_LEGACY_ERROR("virtual_hosts = x\n" + kVhost, 1, "belongs to the native format");
        // Keys of this implementation are accepted in the legacy format too.
        auto l = legacy("session_max_entries = 100\nmax_line_length = 1000\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(size_t(100), l.cfg->sessionMaxEntries);
        // Unknown plugin keys are errors (mtpolicyd ignored them).
        ASSERT_LEGACY_ERROR("<VirtualHost 12345>\n name = t\n <Plugin a>\n  module = Action\n  action = ok\n"
                            "  <AWL>\n  </AWL>\n </Plugin>\n</VirtualHost>\n",
                            6, "block <AWL> is not supported");
    }

    void testOldKeysWarn() {
        // The mtpolicyd 1.x keys were ignored by mtpolicyd 2.x, and the configurations of its own
        // test suite (t-data/*.conf) and sample file still carry them, some with empty values:
        // they are dropped with one warning, at the first of them, naming all.
        const std::string old =
            "keepalive_timeout=0\n"                        // 1
            "db_dsn=\n"                                    // 2
            "db_user=\n"                                   // 3
            "db_password=\n"                               // 4
            "memcached_servers=\"127.0.0.1:11211\"\n"      // 5
            "# memcached_expire=300\n"                     // 6
            "session_lock_wait=50\n"                       // 7
            "session_lock_max_retry=50\n"                  // 8
            "session_lock_timeout=10\n";                   // 9
        auto l = legacy(old + kVhost);
        CPPUNIT_ASSERT_EQUAL(size_t(1), l.warnings.size());
        const std::string& w = l.warnings[0];
        CPPUNIT_ASSERT_MESSAGE(w, w.find("legacy.conf:2: keys db_dsn, db_user, db_password, memcached_servers, "
                                         "session_lock_wait, session_lock_max_retry, session_lock_timeout: "
                                         "mtpolicyd 1.x settings") == 0);
        CPPUNIT_ASSERT_MESSAGE(w, contains(w, "remove them"));
        CPPUNIT_ASSERT_EQUAL(0, l.cfg->keepaliveTimeout);
        // Not used: the configuration is the one without them, and the conversion drops them.
        auto without = legacy("keepalive_timeout=0\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(dumpOf(*without.cfg), dumpOf(*l.cfg));
        TempDir d;
        std::string path = d.write("old.conf", old + kVhost);
        // Config::load keeps the warning for mtpolicyd -t and the start-up log.
        auto loaded = Config::load(path);
        CPPUNIT_ASSERT_EQUAL(size_t(1), loaded->loadWarnings.size());
        CPPUNIT_ASSERT_MESSAGE(loaded->loadWarnings[0], loaded->loadWarnings[0].find(path + ":2: keys db_dsn,") == 0);
        std::vector<std::string> cw;
        std::string native = mtp::convertLegacyConfig(path, &cw);
        CPPUNIT_ASSERT_EQUAL(size_t(1), cw.size());
        CPPUNIT_ASSERT_MESSAGE(native, !contains(native, "\ndb_dsn") && !contains(native, "\nsession_lock"));
        CPPUNIT_ASSERT_MESSAGE(native, contains(native, "# note: " + path + ":2: keys db_dsn,"));
        // One key: singular.
        auto one = legacy("log_level = 2\nmemcached_namespace = mt-\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(size_t(1), one.warnings.size());
        CPPUNIT_ASSERT_MESSAGE(one.warnings[0],
                               one.warnings[0].find("legacy.conf:2: key memcached_namespace: a mtpolicyd 1.x setting") == 0);
        // In an included file the keys of other files name their place.
        std::string inc = d.write("old.inc", "session_lock_wait = 50\n");
        auto both = legacy("db_dsn =\n<<include " + inc + ">>\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(size_t(1), both.warnings.size());
        CPPUNIT_ASSERT_MESSAGE(both.warnings[0], contains(both.warnings[0], "db_dsn, session_lock_wait (" + inc + ":1)"));
        // The keys of this implementation that start the same way are not 1.x keys.
        auto ours = legacy("session_expire = 100\nsession_max_entries = 10\n" + kVhost);
        CPPUNIT_ASSERT(ours.warnings.empty());
        CPPUNIT_ASSERT_EQUAL(100, ours.cfg->sessionExpire);
        // Still errors: a 1.x key without a value, and unknown keys.
        ASSERT_LEGACY_ERROR("db_dsn\n" + kVhost, 1, "key 'db_dsn' has no value");
        ASSERT_LEGACY_ERROR("db_host = x\n" + kVhost, 1, "unknown key 'db_host'");
    }

    void testUpstreamTestConfigStyle() {
        // The shape of the configurations mtpolicyd 2.05's own test suite starts its server with
        // (t-data/*.conf, after Template Toolkit put in the port): 1.x keys, a Memcached
        // connection and SessionCache, vhost_by_policy_context with a second virtual host on
        // "port" 0 that only its name (the policy_context) reaches.
        auto l = legacy(
            "# -*- apache -*-\n"
            "keepalive_timeout=0\nmax_keepalive=0\nrequest_timeout=20\n"
            "db_dsn=\ndb_user=\ndb_password=\n"
            "memcached_servers=\"memcached:11211\"\n"
            "session_lock_wait=50\nsession_lock_max_retry=50\nsession_lock_timeout=10\n"
            "vhost_by_policy_context=1\n"
            "<Connection memcached>\n  module = \"Memcached\"\n  servers=\"memcached:11211\"\n</Connection>\n"
            "<SessionCache>\n  module = \"Memcached\" \n  memcached = \"memcached\"\n</SessionCache>\n"
            "<VirtualHost 12345>\n\tname=\"fred\"\n\t<Plugin reject>\n\t\tmodule = \"Action\"\n"
            "\t\taction = \"reject my name is fred\"\n\t</Plugin>\n</VirtualHost>\n"
            "<VirtualHost 0>\n\tname=\"horst\"\n\t<Plugin reject>\n\t\tmodule = \"Action\"\n"
            "\t\taction = \"reject my name is horst\"\n\t</Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_EQUAL(size_t(3), l.warnings.size());  // 1.x keys, memcached, SessionCache
        CPPUNIT_ASSERT(l.cfg->vhostByPolicyContext);
        CPPUNIT_ASSERT_EQUAL(size_t(2), l.cfg->vhosts.size());
        const mtp::VirtualHost* horst = l.cfg->vhostByName("horst");
        CPPUNIT_ASSERT(horst != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("reject my name is horst"), horst->chain.plugins.at(0)->options().str("action"));
        CPPUNIT_ASSERT_EQUAL(0, l.cfg->keepaliveTimeout);
    }

    void testUnknownPluginModules() {
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin greylist>\n  module = \"Greylist\"\n  score = -5\n"
            " </Plugin>\n</VirtualHost>\n",
            4, "plugin 'greylist': key 'module': the mtpolicyd 2.x module 'Greylist' is not implemented");
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin x>\n  module = Frobnicate\n </Plugin>\n</VirtualHost>\n", 4,
            "unknown plugin module 'Frobnicate'");
        // Also inside a nested chain.
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin s>\n  module = ScoreAction\n  threshold = 5\n"
            "  <Plugin g>\n   module = Greylist\n  </Plugin>\n </Plugin>\n</VirtualHost>\n",
            7, "plugin 'g'");
        std::string msg = errorOf("<VirtualHost 12345>\n name = t\n <Plugin rbl>\n  module = RBL\n </Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "available: Action"));
        // Module names are case-sensitive, in mtpolicyd too (it required the Perl class); the
        // SYNOPSIS of its Action plugin has module = "action". The error names the module.
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin reject-all>\n  module = \"action\"\n  action=reject no reason\n"
            " </Plugin>\n</VirtualHost>\n",
            4, "unknown plugin module 'action' (module names are case-sensitive: 'Action'; available: Action,");
        ASSERT_LEGACY_ERROR(
            "<VirtualHost 12345>\n name = t\n <Plugin g>\n  module = greylist\n </Plugin>\n</VirtualHost>\n", 4,
            "unknown plugin module 'greylist' (module names are case-sensitive: 'Greylist', not implemented yet;");
        msg = errorOf("<VirtualHost 12345>\n name = t\n <Plugin x>\n  module = Frobnicate\n </Plugin>\n</VirtualHost>\n");
        CPPUNIT_ASSERT_MESSAGE(msg, !contains(msg, "case-sensitive"));
    }

    void testErrorAboutDefaultNamesBlock() {
        // Found by tests/fuzz (fuzz_legacy_config, corpus regress-default-db-without-line): a
        // plugin that uses the default `db` when there is no connection "db" was refused with
        // "default: key 'db': ..." -- no file, no line. A default is now located at its block.
        ASSERT_LEGACY_ERROR("log_level = 2\n<VirtualHost 12345>\n name = t\n <Plugin acct>\n  module = Accounting\n"
                            "  fields = client_address\n </Plugin>\n</VirtualHost>\n",
                            4, "key 'db': no connection 'db' configured");
    }

    void testSessionCacheAccepted() {
        for (const char* m : {"None", "Memcached", "Redis"}) {
            auto l = legacy(std::string("<SessionCache>\n  module = \"") + m +
                            "\"\n  expire = \"600\"\n  lock_wait=50\n  lock_max_retry=50\n  lock_timeout=10\n"
                            "</SessionCache>\n" + kVhost);
            CPPUNIT_ASSERT_EQUAL(size_t(1), l.warnings.size());
            CPPUNIT_ASSERT_MESSAGE(l.warnings[0], l.warnings[0].find("legacy.conf:1: <SessionCache>") == 0);
            CPPUNIT_ASSERT_MESSAGE(l.warnings[0], contains(l.warnings[0], m));
            // The expiry of Memcached/Redis sessions becomes session_expire.
            CPPUNIT_ASSERT_EQUAL(std::string(m) == "None" ? 300 : 600, l.cfg->sessionExpire);
            // Config::warnings() reports it (mtpolicyd -t, start-up log).
            std::vector<std::string> w = l.cfg->warnings();
            (void)w;
        }
        ASSERT_LEGACY_ERROR("<SessionCache>\n module = Disk\n</SessionCache>\n" + kVhost, 2,
                            "unknown SessionCache module 'Disk'");
        ASSERT_LEGACY_ERROR("<SessionCache>\n expire = 1\n</SessionCache>\n" + kVhost, 1, "no module defined");
        ASSERT_LEGACY_ERROR("<SessionCache x>\n module = None\n</SessionCache>\n" + kVhost, 1, "takes no name");
        // A global session_expire (this implementation's key) wins over the block's expire.
        auto o = legacy("session_expire = 100\n<SessionCache>\n module = Redis\n expire = 900\n</SessionCache>\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(100, o.cfg->sessionExpire);
    }

    void testConnections() {
        auto l = legacy(
            "<Connection memcached>\n  module = \"Memcached\"\n  servers = \"127.0.0.1:11211\"\n</Connection>\n"
            "<Connection redis>\n  module = Redis\n</Connection>\n"
            "<Connection db>\n  module = \"Sql\"\n  dsn = \"dbi:SQLite:dbname=/var/lib/mtpolicyd/x.sqlite\"\n"
            "</Connection>\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(size_t(1), l.cfg->connections.size());
        CPPUNIT_ASSERT_EQUAL(std::string("db"), l.cfg->connections[0].name);
        CPPUNIT_ASSERT_EQUAL(size_t(2), l.warnings.size());
        CPPUNIT_ASSERT_MESSAGE(l.warnings[0], l.warnings[0].find("legacy.conf:1: <Connection memcached>") == 0);
        CPPUNIT_ASSERT_MESSAGE(l.warnings[1], l.warnings[1].find("legacy.conf:5: <Connection redis>") == 0);
        // Unsupported connection modules are errors naming the line of `module`.
        ASSERT_LEGACY_ERROR("<Connection ldap>\n  module = \"Ldap\"\n  host = localhost\n</Connection>\n" + kVhost, 2,
                            "unsupported connection module 'Ldap'");
        ASSERT_LEGACY_ERROR("<Connection db>\n  dsn = x\n</Connection>\n" + kVhost, 1, "no module defined for connection db");
        ASSERT_LEGACY_ERROR("<Connection>\n module = Sql\n</Connection>\n" + kVhost, 1, "needs a name");
        // A plugin that uses a Memcached connection cannot work.
        ASSERT_LEGACY_ERROR(
            "<Connection memcached>\n module = Memcached\n</Connection>\n"
            "<VirtualHost 12345>\n name = t\n <Plugin acct>\n  module = Accounting\n  fields = client_address\n"
            "  db = memcached\n </Plugin>\n</VirtualHost>\n",
            9, "connection 'memcached' is a Memcached connection");
    }

    void testSyntaxErrorsNameLine() {
        ASSERT_LEGACY_ERROR("log_level = 2\n= 3\n" + kVhost, 2, "a value without a key");
        std::string withNul = std::string("log_level = 2\nuser = a") + '\0' + "b\n" + kVhost;
        ASSERT_LEGACY_ERROR(withNul, 2, "NUL byte");
        ASSERT_LEGACY_ERROR("log_level = two\n" + kVhost, 1, "expected an integer");
        ASSERT_LEGACY_ERROR("Plugin = x\n" + kVhost, 1, "'Plugin' is a block");
        // Deep nesting is refused before it costs anything.
        std::string deep = "<VirtualHost 12345>\n name = t\n";
        for (int i = 0; i < 40; ++i) deep += "<Plugin p" + std::to_string(i) + ">\n module = ScoreAction\n threshold = 1\n";
        std::string msg = errorOf(deep);
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "nested more than"));
        // CRLF line ends and a byte order mark are fine.
        auto crlf = legacy("\xEF\xBB\xBFlog_level = 3\r\nuser = x \\\r\n  y\r\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(3, crlf.cfg->logLevel);
        CPPUNIT_ASSERT_EQUAL(std::string("x y"), crlf.cfg->user);
    }

    void testIncludes() {
        TempDir d;
        d.mkdir("conf.d");
        d.write("conf.d/plugins.conf",
                "<Plugin b>\n  module = Action\n  action = dunno\n</Plugin>\n"
                "<<include more.conf>>\n");  // relative to conf.d/, the including file's directory
        d.write("conf.d/more.conf", "<Plugin c>\n  module = Action\n  action = reject\n</Plugin>\n");
        d.write("globals.conf", "log_level = 4\n");
        std::string main = d.write("mtpolicyd.conf",
                                   "<<include globals.conf>>\n"
                                   "<VirtualHost 12345>\n"
                                   "  name = t\n"
                                   "  <Plugin a>\n    module = SetField\n    key = k\n    value = v\n  </Plugin>\n"
                                   "  <<INCLUDE \"conf.d/plugins.conf\">>\n"
                                   "</VirtualHost>\n");
        auto c = Config::load(main);
        CPPUNIT_ASSERT(c->legacyFormat);
        CPPUNIT_ASSERT_EQUAL(4, c->logLevel);
        CPPUNIT_ASSERT_EQUAL(size_t(3), c->vhosts[0]->chain.plugins.size());
        CPPUNIT_ASSERT_EQUAL(std::string("c"), plugin(*c, 0, 2).name());
        CPPUNIT_ASSERT_EQUAL(d.path + "/conf.d/more.conf:3", plugin(*c, 0, 2).options().whereOf("action"));
        CPPUNIT_ASSERT_EQUAL(d.path + "/globals.conf:1", c->global.whereOf("log_level"));
        // An absolute include.
        std::string abs = d.write("abs.conf", "<<include " + d.path + "/globals.conf>>\n" + kVhost);
        CPPUNIT_ASSERT_EQUAL(4, Config::load(abs)->logLevel);
    }

    void testIncludeErrors() {
        TempDir d;
        auto loadError = [](const std::string& path) {
            try {
                Config::load(path);
            } catch (const ConfigError& e) {
                return std::string(e.what());
            }
            return std::string();
        };
        std::string missing = d.write("missing.conf", "log_level = 2\n<<include nothere.conf>>\n" + kVhost);
        std::string msg = loadError(missing);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(missing + ":2: <<include " + d.path + "/nothere.conf>>: no such file") == 0);

        d.write("a.conf", "log_level = 2\n<<include b.conf>>\n");
        d.write("b.conf", "user = x\n<<include a.conf>>\n");
        std::string cyc = d.write("cycle.conf", "<<include a.conf>>\n" + kVhost);
        msg = loadError(cyc);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(d.path + "/b.conf:2:") == 0);
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "include cycle"));

        d.write("g.conf", "log_level = 2\n");
        std::string twice = d.write("twice.conf", "<<include g.conf>>\n<<include g.conf>>\n" + kVhost);
        msg = loadError(twice);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(twice + ":2:") == 0);
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "already read (included at " + twice + ":1)"));

        std::string self = d.write("self.conf", "<<include self.conf>>\n" + kVhost);
        msg = loadError(self);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(self + ":1:") == 0 && contains(msg, "include cycle"));

        d.mkdir("dir");
        std::string dir = d.write("dir.conf", "<<include dir>>\n" + kVhost);
        msg = loadError(dir);
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "is a directory"));

        // A chain of includes deeper than the limit.
        for (int i = 0; i < 20; ++i)
            d.write("deep" + std::to_string(i) + ".conf", "<<include deep" + std::to_string(i + 1) + ".conf>>\n");
        d.write("deep20.conf", "log_level = 1\n");
        std::string deep = d.write("deep.conf", "<<include deep0.conf>>\n" + kVhost);
        msg = loadError(deep);
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "nested more than"));

        // An error in an included file names that file and line.
        d.write("bad.conf", "log_level = 2\nlog_facility = mail\n");
        std::string bad = d.write("withbad.conf", "<<include bad.conf>>\n" + kVhost);
        msg = loadError(bad);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(d.path + "/bad.conf:2:") == 0);
    }

    // --- format detection -------------------------------------------------------------------

    void testDetection() {
        using mtp::looksLikeLegacyConfig;
        // mtpolicyd 2.x
        CPPUNIT_ASSERT(looksLikeLegacyConfig(kVhost));
        CPPUNIT_ASSERT(looksLikeLegacyConfig(kHowto));
        CPPUNIT_ASSERT(looksLikeLegacyConfig("user=mtpolicyd\nlog_level=2\n"));  // no blocks: still 2.x
        CPPUNIT_ASSERT(looksLikeLegacyConfig("# comment\n<<include other.conf>>\n"));
        CPPUNIT_ASSERT(looksLikeLegacyConfig("user mtpolicyd\n"));
        // A block decides even when a later value ends with ';' (an SQL here-document).
        CPPUNIT_ASSERT(looksLikeLegacyConfig("log_level = 2\n<VirtualHost 1>\n sql <<E\nSELECT 1;\nE\n</VirtualHost>\n"));
        // libconfig
        CPPUNIT_ASSERT(!looksLikeLegacyConfig(""));
        CPPUNIT_ASSERT(!looksLikeLegacyConfig("# only a comment\n\n"));
        CPPUNIT_ASSERT(!looksLikeLegacyConfig("log_level = 2;\n"));
        CPPUNIT_ASSERT(!looksLikeLegacyConfig("@include \"x.conf\"\n"));
        CPPUNIT_ASSERT(!looksLikeLegacyConfig("virtual_hosts = (\n { name = \"t\"; } );\n"));
        // libconfig without semicolons: the list decides.
        CPPUNIT_ASSERT(!looksLikeLegacyConfig("log_level = 2\nvirtual_hosts = (\n"));
        // Comments of either format never decide.
        CPPUNIT_ASSERT(!looksLikeLegacyConfig("# <VirtualHost 12345>\n// <Plugin x>\n/* <Plugin y>\n*/ log_level = 2;\n"));
        CPPUNIT_ASSERT(!looksLikeLegacyConfig("log_level = 2; # <VirtualHost 1>\n<Plugin x>\n"));  // first line decides
        CPPUNIT_ASSERT(looksLikeLegacyConfig("/* log_level = 2; */\n<VirtualHost 1>\n"));
        // The shipped native samples.
        std::string srcdir = std::getenv("MTPOLICYD_SRCDIR") ? std::getenv("MTPOLICYD_SRCDIR") : "";
        if (srcdir.empty()) {
            std::string f = __FILE__;
            srcdir = f.substr(0, f.rfind("/tests/unit/"));
        }
        for (const char* sample : {"/conf/mtpolicyd.conf", "/conf/mtpolicyd-mysql.conf"}) {
            std::string text;
            if (readFile(srcdir + sample, text)) CPPUNIT_ASSERT_MESSAGE(sample, !looksLikeLegacyConfig(text));
        }
        std::string debian;
        if (readFile(kDebianConf, debian)) CPPUNIT_ASSERT(looksLikeLegacyConfig(debian));
    }

    void testLoadChoosesReader() {
        TempDir d;
        std::string old = d.write("old.conf", "log_level = 3\n<SessionCache>\n module = Memcached\n</SessionCache>\n" + kVhost);
        auto c = Config::load(old);
        CPPUNIT_ASSERT(c->legacyFormat);
        CPPUNIT_ASSERT_EQUAL(3, c->logLevel);
        CPPUNIT_ASSERT_EQUAL(size_t(1), c->loadWarnings.size());
        std::vector<std::string> w = c->warnings();
        CPPUNIT_ASSERT(!w.empty());
        CPPUNIT_ASSERT_MESSAGE(w[0], w[0].find(old + ":2: <SessionCache>") == 0);
        std::string native = d.write("new.conf",
                                     "log_level = 3;\nvirtual_hosts = ( { name = \"t\"; port = \"12345\";\n"
                                     "  plugins = ( { name = \"a\"; module = \"Action\"; action = \"reject\"; } ); } );\n");
        auto n = Config::load(native);
        CPPUNIT_ASSERT(!n->legacyFormat);
        CPPUNIT_ASSERT_EQUAL(dumpOf(*c), dumpOf(*n).replace(dumpOf(*n).find(native), native.size(), old));
        // A libconfig syntax error stays a libconfig error.
        std::string bad = d.write("bad.conf", "log_level = 3;\nuser = ;\n");
        try {
            Config::load(bad);
            CPPUNIT_FAIL("no error");
        } catch (const ConfigError& e) {
            CPPUNIT_ASSERT_MESSAGE(e.what(), contains(e.what(), "syntax error"));
        }
    }

    // --- real configurations ----------------------------------------------------------------

    void testHowtoAccountingQuota() {
        auto l = legacy(kHowto, "/etc/mtpolicyd/mtpolicyd.conf");
        const Config& c = *l.cfg;
        CPPUNIT_ASSERT(l.warnings.empty());
        CPPUNIT_ASSERT_EQUAL(size_t(2), c.listen.size());
        CPPUNIT_ASSERT(c.warnings().size() <= 2);  // only user/group, on a machine without them
        CPPUNIT_ASSERT_EQUAL(0, c.keepaliveTimeout);
        CPPUNIT_ASSERT_EQUAL(50, c.maxServers);
        CPPUNIT_ASSERT_EQUAL(size_t(1), c.connections.size());
        CPPUNIT_ASSERT_EQUAL(std::string("mtpolicyd"), c.connections[0].opts.str("user"));
        const auto* acct = c.vhostForKey("12346");
        CPPUNIT_ASSERT(acct);
        CPPUNIT_ASSERT_EQUAL(std::string("accounting"), acct->name);
        CPPUNIT_ASSERT_EQUAL(size_t(3), acct->chain.plugins.size());
        CPPUNIT_ASSERT_EQUAL(std::string("QuotaPolicyConfig"), acct->chain.plugins[0]->name());
        CPPUNIT_ASSERT_EQUAL(std::string("QuotaIP"), acct->chain.plugins[1]->name());
        CPPUNIT_ASSERT_EQUAL(std::string("AcctIP"), acct->chain.plugins[2]->name());
        const mtp::Options& q = acct->chain.plugins[1]->options();
        CPPUNIT_ASSERT_EQUAL(std::string("quota_count"), q.ucKey("threshold"));
        CPPUNIT_ASSERT_EQUAL(1000.0, q.number("threshold"));
        CPPUNIT_ASSERT_EQUAL(std::string("%Y-%m"), q.str("time_pattern"));  // the commented default
        std::vector<std::string> ls = lines(kHowto);
        size_t uc = 0;
        while (uc < ls.size() && !contains(ls[uc], "uc_threshold")) ++uc;
        CPPUNIT_ASSERT_EQUAL("/etc/mtpolicyd/mtpolicyd.conf:" + std::to_string(uc + 1), q.whereOf("uc_threshold"));
    }

    void testHowtoChainRuns() {
        // The how-to with SQLite instead of MySQL: a client whose relay policy allows 2
        // messages gets the third one deferred, and only accepted messages are counted.
        std::string text = kHowto;
        size_t dsn = text.find("DBI:mysql:database=mtpolicyd;host=localhost");
        text.replace(dsn, std::string("DBI:mysql:database=mtpolicyd;host=localhost").size(), "dbi:SQLite:dbname=:memory:");
        for (const char* k : {"  user = \"mtpolicyd\"\n", "  password = \"secret\"\n"}) text.erase(text.find(k), std::string(k).size());
        auto l = legacy(text);
        Config& c = *l.cfg;
        c.startPlugins();
        std::shared_ptr<mtp::SqlConnection> db = c.connections[0].sql;
        db->executeDirect("CREATE TABLE relay_policies (id INTEGER PRIMARY KEY, `desc` VARCHAR(64), config TEXT)");
        db->executeDirect("CREATE TABLE relay_hosts (id INTEGER PRIMARY KEY, client_address VARCHAR(64), relay_policy INT)");
        db->executeDirect("INSERT INTO relay_policies VALUES (1, 'tiny', '{\"quota_count\":\"2\"}')");
        db->executeDirect("INSERT INTO relay_hosts VALUES (1, '192.0.2.1', 1)");
        mtp::SessionStore sessions(300, 100);
        auto send = [&](const std::string& client, int n) {
            mtp::Request r;
            r.attrs = {{"request", "smtpd_access_policy"}, {"protocol_state", "END-OF-MESSAGE"},
                       {"client_address", client},          {"recipient_count", "1"},
                       {"size", "100"},                     {"instance", "m" + std::to_string(n)}};
            r.session = &sessions.acquire(r.get("instance"), time(nullptr));
            r.vhost = c.vhostForKey("12346");
            r.vhost->chain.run(r);
            return r.result.actions.empty() ? std::string("<none>") : r.result.actions[0];
        };
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), send("192.0.2.1", 1));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), send("192.0.2.1", 2));
        CPPUNIT_ASSERT_EQUAL(std::string("defer you exceeded your monthly limit, please insert coin"),
                             send("192.0.2.1", 3));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), send("198.51.100.1", 4));  // default threshold 1000
        auto rows = db->execute("SELECT SUM(`count`) FROM acct_client_address WHERE `key` = '192.0.2.1'", {}).rows;
        CPPUNIT_ASSERT(!rows.empty() && rows[0][0]);
        CPPUNIT_ASSERT_EQUAL(std::string("2"), *rows[0][0]);
    }

    void testReputationChainRuns() {
        // A request through a chain read from the legacy format, scores across the requests of
        // one message included.
        auto l = legacy(
            "<VirtualHost 12345>\n"
            "  name = reputation\n"
            "  <Plugin no-rdns>\n    module = Condition\n    key = client_name\n    match = unknown\n"
            "    score = 3\n  </Plugin>\n"
            "  <Plugin ScoreReject>\n    module = ScoreAction\n    threshold = 15\n"
            "    action = \"reject sender ip %IP% is blocked (score=%SCORE%%SCORE_DETAIL%)\"\n  </Plugin>\n"
            "  <Plugin ScoreTag>\n    module = AddScoreHeader\n    spam_score = 5\n  </Plugin>\n"
            "</VirtualHost>\n");
        l.cfg->startPlugins();
        mtp::Session s;
        mtp::Request r;
        r.session = &s;
        r.vhost = l.cfg->vhosts[0].get();
        r.attrs = {{"request", "smtpd_access_policy"}, {"client_address", "192.0.2.1"},
                   {"client_name", "unknown"}, {"instance", "a1"}};
        r.vhost->chain.run(r);
        CPPUNIT_ASSERT_EQUAL(size_t(1), r.result.actions.size());
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: NO score=3 [no-rdns=3]"), r.result.actions[0]);
    }

    void testDebianDefaultConfig() {
        std::string text;
        if (!readFile(kDebianConf, text)) {
            std::cout << "\nTestLegacyConfig::testDebianDefaultConfig: " << kDebianConf
                      << " not present, skipped" << std::endl;
            return;
        }
        // The first <Plugin NAME> whose module this version does not have, and the line of
        // its `module`, found here by a plain scan that does not share the reader's code.
        std::vector<std::string> ls = lines(text);
        std::string firstName, firstModule;
        int firstLine = 0;
        std::vector<std::string> blocks;
        std::vector<std::string> names;
        for (size_t i = 0; i < ls.size() && firstLine == 0; ++i) {
            std::string t = trimmed(ls[i]);
            if (t.empty() || t[0] == '#') continue;
            if (t.compare(0, 2, "</") == 0) {
                if (!blocks.empty()) blocks.pop_back(), names.pop_back();
            } else if (t[0] == '<') {
                std::string inner = t.substr(1, t.size() - 2);
                size_t sp = inner.find_first_of(" \t");
                blocks.push_back(inner.substr(0, sp));
                names.push_back(sp == std::string::npos ? "" : trimmed(inner.substr(sp)));
            } else if (!blocks.empty() && blocks.back() == "Plugin") {
                std::string m = moduleOf(t);
                if (!m.empty() && !mtp::findPluginSpec(m)) {
                    firstName = names.back();
                    firstModule = m;
                    firstLine = static_cast<int>(i + 1);
                }
            }
        }
        std::string msg;
        std::unique_ptr<Config> c;
        try {
            c = Config::load(kDebianConf);
        } catch (const ConfigError& e) {
            msg = e.what();
        }
        if (firstLine == 0) {
            // Every plugin exists by now: the file must load.
            CPPUNIT_ASSERT_MESSAGE(msg, c != nullptr);
            CPPUNIT_ASSERT(c->legacyFormat);
            return;
        }
        std::string where = std::string(kDebianConf) + ":" + std::to_string(firstLine) + ":";
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(where) == 0);
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "plugin '" + firstName + "'"));
        CPPUNIT_ASSERT_MESSAGE(msg, contains(msg, "'" + firstModule + "' is not implemented"));

        // Without the plugins this version does not have, the file loads, with warnings for
        // its SessionCache and memcached connection, and converts.
        std::string kept;
        std::vector<std::string> block;
        int depth = 0;
        bool drop = false;
        for (const auto& l : ls) {
            std::string t = trimmed(l);
            bool comment = t.empty() || t[0] == '#';
            if (!comment && t.compare(0, 7, "<Plugin") == 0 && depth++ == 0) {
                block.clear();
                drop = false;
            }
            if (depth == 0) {
                kept += l + "\n";
                continue;
            }
            block.push_back(l);
            std::string m = comment ? "" : moduleOf(t);
            if (!m.empty() && !mtp::findPluginSpec(m)) drop = true;
            if (!comment && t.compare(0, 9, "</Plugin>") == 0 && --depth == 0) {
                for (const auto& b : block) kept += (drop ? "# " : "") + b + "\n";  // keeps the line numbers
            }
        }
        TempDir d;
        std::string path = d.write("mtpolicyd.conf", kept);
        auto k = Config::load(path);
        CPPUNIT_ASSERT(k->legacyFormat);
        CPPUNIT_ASSERT_EQUAL(std::string("reputation"), k->vhosts[0]->name);
        CPPUNIT_ASSERT(!k->vhosts[0]->chain.plugins.empty());
        CPPUNIT_ASSERT_EQUAL(size_t(2), k->loadWarnings.size());  // SessionCache, memcached
        CPPUNIT_ASSERT_EQUAL(0, k->keepaliveTimeout);
        std::vector<std::string> w;
        std::string native = mtp::convertLegacyConfig(path, &w);
        CPPUNIT_ASSERT_EQUAL(size_t(2), w.size());
        auto again = Config::fromTree(mtp::readLibconfigString(native, path), path);
        CPPUNIT_ASSERT_EQUAL(dumpOf(*k), dumpOf(*again));
    }

    // --- conversion ---------------------------------------------------------------------------

    void testConvertRoundTrip() {
        const std::string texts[] = {
            kHowto,
            "user = \"mail user\"\nvhost_by_policy_context = 1\nport = 12345, 12346\nlog_level 4\n"
            "<SessionCache>\n module = Redis\n expire = 120\n</SessionCache>\n"
            "<VirtualHost 12345>\n name = \"a \\\"b\\\"\"\n"
            " <Plugin c\\d>\n  module = Condition\n  key = session:x\n  re_match = ^a\\.b\\\\c$\n  invert = 0\n"
            "  score = -2.5\n  uc_score = s\n  <Plugin inner>\n   module = Action\n   action = <<E\nreject\ttab\n"
            "line2\nE\n  </Plugin>\n </Plugin>\n <Plugin s>\n  module = ClearFields\n  fields = a,b\n </Plugin>\n"
            "</VirtualHost>\n"
            "<VirtualHost 12346>\n name = b\n <Plugin q>\n  module = ScoreAction\n  threshold = 007\n  action = x\n"
            " </Plugin>\n</VirtualHost>\n",
        };
        for (const auto& text : texts) {
            std::vector<std::string> w;
            ConfNode root = mtp::readLegacyString(text, kFile, &w);
            auto legacyCfg = Config::fromTree(root, kFile);
            std::string native = mtp::formatNativeConfig(root, kFile, w);
            CPPUNIT_ASSERT_MESSAGE(native, !mtp::looksLikeLegacyConfig(native));
            auto nativeCfg = Config::fromTree(mtp::readLibconfigString(native, kFile), kFile);
            CPPUNIT_ASSERT_EQUAL(dumpOf(*legacyCfg), dumpOf(*nativeCfg));
            // The source of each block is named in a comment.
            CPPUNIT_ASSERT_MESSAGE(native, contains(native, "# <VirtualHost 12345> at legacy.conf:"));
            for (const auto& note : w) CPPUNIT_ASSERT_MESSAGE(native, contains(native, "# note: " + note));
        }
        // Typed values where the setting has a type, strings otherwise.
        ConfNode root = mtp::readLegacyString(texts[1], kFile);
        std::string native = mtp::formatNativeConfig(root, kFile, {});
        CPPUNIT_ASSERT_MESSAGE(native, contains(native, "vhost_by_policy_context = true;"));
        CPPUNIT_ASSERT_MESSAGE(native, contains(native, "port = [ \"12345\", \"12346\" ];"));
        CPPUNIT_ASSERT_MESSAGE(native, contains(native, "log_level = 4;"));
        CPPUNIT_ASSERT_MESSAGE(native, contains(native, "score = -2.5;"));
        CPPUNIT_ASSERT_MESSAGE(native, contains(native, "threshold = \"007\";"));
        CPPUNIT_ASSERT_MESSAGE(native, contains(native, "action = \"reject\\ttab\\nline2\";"));
        CPPUNIT_ASSERT_MESSAGE(native, contains(native, "session_expire = 120;"));
        // A connection name that libconfig cannot have is an error, not a broken file.
        ConfNode odd = mtp::readLegacyString(
            "<Connection my.db>\n module = Sql\n dsn = dbi:SQLite:dbname=:memory:\n</Connection>\n" + kVhost, kFile);
        try {
            mtp::formatNativeConfig(odd, kFile, {});
            CPPUNIT_FAIL("no error");
        } catch (const ConfigError& e) {
            CPPUNIT_ASSERT_MESSAGE(e.what(), std::string(e.what()).find("legacy.conf:1:") == 0);
            CPPUNIT_ASSERT_MESSAGE(e.what(), contains(e.what(), "rename it"));
        }
    }

    void testConvertFile() {
        TempDir d;
        std::string path = d.write("mtpolicyd.conf", kHowto);
        std::string native = mtp::convertLegacyConfig(path);
        std::string out = d.write("native.conf", native);
        auto a = Config::load(path);
        auto b = Config::load(out);
        CPPUNIT_ASSERT(a->legacyFormat);
        CPPUNIT_ASSERT(!b->legacyFormat);
        std::string da = dumpOf(*a), db = dumpOf(*b);
        da.replace(da.find(path), path.size(), out);
        CPPUNIT_ASSERT_EQUAL(da, db);
        // A native file is not converted again; an invalid file gives its error.
        try {
            mtp::convertLegacyConfig(out);
            CPPUNIT_FAIL("no error");
        } catch (const ConfigError& e) {
            CPPUNIT_ASSERT_MESSAGE(e.what(), contains(e.what(), "already in the native"));
        }
        std::string bad = d.write("bad.conf", "log_level = 2\nlog_level = 3\n" + kVhost);
        try {
            mtp::convertLegacyConfig(bad);
            CPPUNIT_FAIL("no error");
        } catch (const ConfigError& e) {
            CPPUNIT_ASSERT_MESSAGE(e.what(), std::string(e.what()).find(bad + ":2:") == 0);
        }
    }
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestLegacyConfig);
