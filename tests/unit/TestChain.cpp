// Unit tests for mtp::Chain, the plugin chain runner, with real plugins built from config text:
// file order, the first action aborting the chain, no action meaning "dunno", nested chains
// handing their results to the outer chain, on_error = "fail" (the default: the request fails
// with a PluginError naming the plugin) versus "continue", and uc_<option> overrides read from
// session variables.
#include <cppunit/extensions/HelperMacros.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "mtpolicyd/core/Config.h"
#include "unit/TestHelpers.h"
#include "mtpolicyd/core/Registry.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

using mtp::Chain;
using mtp::Config;
using mtp::Options;
using mtp::Plugin;
using mtp::PluginContext;
using mtp::PluginError;
using mtp::Request;
using mtp::Session;

namespace {

using testhelpers::chainConfig;

// A request from 127.0.0.1 with its own session.
struct Run {
    Session s;
    Request r;
    explicit Run(const Config* cfg = nullptr) {
        r.session = &s;
        if (cfg) r.vhost = cfg->vhosts[0].get();
        r.attrs["request"] = "smtpd_access_policy";
        r.attrs["client_address"] = "127.0.0.1";
        r.attrs["instance"] = "abcd1234";
    }
    Run(const Run&) = delete;
    bool has(const std::string& var) const { return s.get(var) != nullptr; }
    std::string var(const std::string& k) const { return s.get(k) ? *s.get(k) : "<unset>"; }
};

Options pluginOptions(const std::string& name, const std::string& onError) {
    Options o;
    o.setForTest("name", name);
    o.setForTest("module", "Test");
    o.setForTest("on_error", onError);
    o.setForTest("log_level", "4");
    return o;
}

// Test-only plugins.
class ThrowingPlugin : public Plugin {
  public:
    explicit ThrowingPlugin(PluginContext& ctx) : Plugin(ctx) {}
    void run(Request& r) override {
        r.sess().set("throwing-ran", "1");
        throw std::runtime_error("database went away");
    }
};

// Appends its name to the session variable "trace".
class TracePlugin : public Plugin {
  public:
    explicit TracePlugin(PluginContext& ctx) : Plugin(ctx) {}
    void run(Request& r) override {
        const std::string* t = r.sess().get("trace");
        r.sess().set("trace", (t ? *t + "," : "") + name());
    }
};

template <class P>
std::unique_ptr<Plugin> makeTestPlugin(const std::string& name,
                                       const std::string& onError = "fail") {
    Options o = pluginOptions(name, onError);
    PluginContext ctx{o, name, "Test", nullptr, nullptr};
    return std::unique_ptr<Plugin>(new P(ctx));
}

// Builds a real plugin of `module` from a libconfig block body, with an optional nested chain.
std::unique_ptr<Plugin> makeRealPlugin(const std::string& body,
                                       std::unique_ptr<Chain> nested = nullptr) {
    mtp::ConfNode n = mtp::readLibconfigString(body, "test.conf");
    const mtp::ConfNode* m = n.child("module");
    CPPUNIT_ASSERT(m != nullptr);
    const mtp::PluginSpec* spec = mtp::findPluginSpec(m->value);
    CPPUNIT_ASSERT(spec != nullptr);
    Options o = Options::apply(n, {&mtp::commonPluginSettings(), &spec->settings}, "plugin");
    PluginContext ctx{o, o.str("name"), spec->module, std::move(nested), nullptr};
    return spec->make(ctx);
}

}  // namespace

class TestChain : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestChain);
    CPPUNIT_TEST(testPluginsRunInOrder);
    CPPUNIT_TEST(testFirstActionAbortsChain);
    CPPUNIT_TEST(testNoActionMeansDunno);
    CPPUNIT_TEST(testResultNamesPlugin);
    CPPUNIT_TEST(testNestedChainResultAbortsOuter);
    CPPUNIT_TEST(testNestedChainWithoutActionContinuesOuter);
    CPPUNIT_TEST(testNestedChainTwoLevels);
    CPPUNIT_TEST(testScoreActionNestedChain);
    CPPUNIT_TEST(testOnErrorFailThrowsPluginError);
    CPPUNIT_TEST(testOnErrorContinueGoesOn);
    CPPUNIT_TEST(testOnErrorContinueIsLogged);
    CPPUNIT_TEST(testNestedErrorFailsOuterChain);
    CPPUNIT_TEST(testNestedErrorContinueOnOuterPlugin);
    CPPUNIT_TEST(testUcActionOnCondition);
    CPPUNIT_TEST(testUcActionWithoutConfiguredAction);
    CPPUNIT_TEST(testUcScoreOnCondition);
    CPPUNIT_TEST(testUcThresholdOnScoreAction);
    CPPUNIT_TEST(testUcFromSetFieldEarlierInChain);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override {
        savedLevel_ = mtp::log::g_level;
        mtp::log::g_level = -1;  // plugin error logs would clutter the test output
    }
    void tearDown() override { mtp::log::g_level = savedLevel_; }

    void testPluginsRunInOrder() {
        auto cfg = chainConfig(
            "{ name = \"one\"; module = \"SetField\"; key = \"x\"; value = \"first\"; },\n"
            "{ name = \"saw\"; module = \"Condition\"; key = \"session:x\"; match = \"first\";\n"
            "  plugins = ( { name = \"mark\"; module = \"SetField\"; key = \"saw_first\"; value = "
            "\"1\"; } ); },\n"
            "{ name = \"two\"; module = \"SetField\"; key = \"x\"; value = \"second\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT_EQUAL(std::string("1"), run.var("saw_first"));  // ran after "one"
        CPPUNIT_ASSERT_EQUAL(std::string("second"), run.var("x"));     // "two" ran last
        CPPUNIT_ASSERT(run.r.result.actions.empty());

        // Direct check with tracing plugins.
        Chain ch;
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("a"));
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("b"));
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("c"));
        Run run2;
        ch.run(run2.r);
        CPPUNIT_ASSERT_EQUAL(std::string("a,b,c"), run2.var("trace"));
    }

    void testFirstActionAbortsChain() {
        auto cfg = chainConfig(
            "{ name = \"before\"; module = \"SetField\"; key = \"before\"; value = \"1\"; },\n"
            "{ name = \"deny\"; module = \"Action\"; action = \"reject\"; },\n"
            "{ name = \"after\"; module = \"SetField\"; key = \"after\"; value = \"1\"; },\n"
            "{ name = \"second\"; module = \"Action\"; action = \"defer later\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
        CPPUNIT_ASSERT_EQUAL(std::string("reject"), run.r.result.actions[0]);
        CPPUNIT_ASSERT(run.r.result.abort);
        CPPUNIT_ASSERT(run.has("before"));
        CPPUNIT_ASSERT(!run.has("after"));
    }

    void testNoActionMeansDunno() {
        auto cfg = chainConfig(
            "{ name = \"s\"; module = \"SetField\"; key = \"k\"; value = \"v\"; },\n"
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"10.0.0.1\"; action = \"reject\"; },\n"
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 5; action = \"reject score\"; "
            "},\n"
            "{ name = \"cf\"; module = \"ClearFields\"; fields = \"nothing\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT(run.r.result.actions.empty());
        CPPUNIT_ASSERT(!run.r.result.abort);
        CPPUNIT_ASSERT_EQUAL(std::string("v"), run.var("k"));
    }

    void testResultNamesPlugin() {
        auto cfg = chainConfig(
            "{ name = \"s\"; module = \"SetField\"; key = \"k\"; value = \"v\"; },\n"
            "{ name = \"blocker\"; module = \"Action\"; action = \"reject\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT_EQUAL(std::string("blocker"), run.r.result.plugin);
    }

    void testNestedChainResultAbortsOuter() {
        auto cfg = chainConfig(
            "{ name = \"local\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  plugins = (\n"
            "    { name = \"in1\"; module = \"SetField\"; key = \"inner\"; value = \"1\"; },\n"
            "    { name = \"inact\"; module = \"Action\"; action = \"reject inner\"; },\n"
            "    { name = \"in2\"; module = \"SetField\"; key = \"inner_after\"; value = \"1\"; }\n"
            "  ); },\n"
            "{ name = \"outer\"; module = \"SetField\"; key = \"outer_after\"; value = \"1\"; },\n"
            "{ name = \"outeract\"; module = \"Action\"; action = \"reject outer\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
        CPPUNIT_ASSERT_EQUAL(std::string("reject inner"), run.r.result.actions[0]);
        CPPUNIT_ASSERT(run.r.result.abort);
        CPPUNIT_ASSERT(run.has("inner"));
        CPPUNIT_ASSERT(!run.has("inner_after"));
        CPPUNIT_ASSERT(!run.has("outer_after"));
    }

    void testNestedChainWithoutActionContinuesOuter() {
        auto cfg = chainConfig(
            "{ name = \"local\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  plugins = ( { name = \"in1\"; module = \"SetField\"; key = \"inner\"; value = "
            "\"1\"; } ); },\n"
            "{ name = \"outer\"; module = \"SetField\"; key = \"outer_after\"; value = \"1\"; },\n"
            "{ name = \"outeract\"; module = \"Action\"; action = \"reject outer\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
        CPPUNIT_ASSERT_EQUAL(std::string("reject outer"), run.r.result.actions[0]);
        CPPUNIT_ASSERT(run.has("inner"));
        CPPUNIT_ASSERT(run.has("outer_after"));
    }

    void testNestedChainTwoLevels() {
        auto cfg = chainConfig(
            "{ name = \"l1\"; module = \"Condition\"; key = \"request\"; match = "
            "\"smtpd_access_policy\";\n"
            "  plugins = (\n"
            "    { name = \"l2\"; module = \"Condition\"; key = \"r:client_address\"; match = "
            "\"127.0.0.1\";\n"
            "      plugins = ( { name = \"deep\"; module = \"Action\"; action = \"reject from "
            "level 3\"; } ); },\n"
            "    { name = \"l2after\"; module = \"SetField\"; key = \"l2after\"; value = \"1\"; }\n"
            "  ); },\n"
            "{ name = \"last\"; module = \"Action\"; action = \"reject outer\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
        CPPUNIT_ASSERT_EQUAL(std::string("reject from level 3"), run.r.result.actions[0]);
        CPPUNIT_ASSERT(!run.has("l2after"));
    }

    void testScoreActionNestedChain() {
        auto cfg = chainConfig(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\"; score = 6; },\n"
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 5;\n"
            "  plugins = ( { name = \"n\"; module = \"Action\"; action = \"defer scored\"; } ); "
            "},\n"
            "{ name = \"after\"; module = \"SetField\"; key = \"after\"; value = \"1\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
        CPPUNIT_ASSERT_EQUAL(std::string("defer scored"), run.r.result.actions[0]);
        CPPUNIT_ASSERT(!run.has("after"));
    }

    void testOnErrorFailThrowsPluginError() {
        Chain ch;
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("a"));
        ch.plugins.push_back(makeTestPlugin<ThrowingPlugin>("sqlbroken"));
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("c"));
        Run run;
        std::string msg;
        try {
            ch.run(run.r);
        } catch (const PluginError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE("no PluginError", !msg.empty());
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("sqlbroken") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("database went away") != std::string::npos);
        CPPUNIT_ASSERT_EQUAL(std::string("a"), run.var("trace"));  // "c" never ran
        CPPUNIT_ASSERT(run.r.result.actions.empty());
    }

    void testOnErrorContinueGoesOn() {
        Chain ch;
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("a"));
        ch.plugins.push_back(makeTestPlugin<ThrowingPlugin>("sqlbroken", "continue"));
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("c"));
        ch.plugins.push_back(makeRealPlugin(
            "name = \"act\"; module = \"Action\"; action = \"reject after error\";"));
        Run run;
        ch.run(run.r);
        CPPUNIT_ASSERT(run.has("throwing-ran"));
        CPPUNIT_ASSERT_EQUAL(std::string("a,c"), run.var("trace"));
        CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
        CPPUNIT_ASSERT_EQUAL(std::string("reject after error"), run.r.result.actions[0]);
    }

    void testOnErrorContinueIsLogged() {
        std::string logged;
        {
            testhelpers::LogCapture capture(0);
            Chain ch;
            ch.plugins.push_back(makeTestPlugin<ThrowingPlugin>("sqlbroken", "continue"));
            Run run;
            ch.run(run.r);
            logged = capture.text();
        }
        CPPUNIT_ASSERT_MESSAGE(logged, logged.find("plugin sqlbroken failed") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(logged, logged.find("database went away") != std::string::npos);
    }

    void testNestedErrorFailsOuterChain() {
        auto inner = std::make_unique<Chain>();
        inner->plugins.push_back(makeTestPlugin<ThrowingPlugin>("innerbroken"));
        Chain ch;
        ch.plugins.push_back(
            makeRealPlugin("name = \"cond\"; module = \"Condition\"; key = \"client_address\"; "
                           "match = \"127.0.0.1\";",
                           std::move(inner)));
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("after"));
        Run run;
        std::string msg;
        try {
            ch.run(run.r);
        } catch (const PluginError& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE("no PluginError", !msg.empty());
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("innerbroken") != std::string::npos);
        CPPUNIT_ASSERT(!run.has("trace"));
    }

    void testNestedErrorContinueOnOuterPlugin() {
        // The inner plugin fails (default on_error), the Condition holding it says continue:
        // the outer chain goes on, as mtpolicyd's per-plugin eval does.
        auto inner = std::make_unique<Chain>();
        inner->plugins.push_back(makeTestPlugin<ThrowingPlugin>("innerbroken"));
        Chain ch;
        ch.plugins.push_back(
            makeRealPlugin("name = \"cond\"; module = \"Condition\"; key = \"client_address\"; "
                           "match = \"127.0.0.1\";"
                           " on_error = \"continue\";",
                           std::move(inner)));
        ch.plugins.push_back(makeTestPlugin<TracePlugin>("after"));
        Run run;
        ch.run(run.r);
        CPPUNIT_ASSERT(run.has("throwing-ran"));
        CPPUNIT_ASSERT_EQUAL(std::string("after"), run.var("trace"));
    }

    void testUcActionOnCondition() {
        auto cfg = chainConfig(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  action = \"reject configured\"; uc_action = \"my_action\"; }\n");
        {
            Run run(cfg.get());
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
            CPPUNIT_ASSERT_EQUAL(std::string("reject configured"), run.r.result.actions[0]);
        }
        {
            Run run(cfg.get());
            run.s.set("my_action", "defer from session");
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
            CPPUNIT_ASSERT_EQUAL(std::string("defer from session"), run.r.result.actions[0]);
        }
        {
            // uc_action names a session *key*; a value equal to the key name is not special.
            Run run(cfg.get());
            run.s.set("other", "defer other");
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT_EQUAL(std::string("reject configured"), run.r.result.actions[0]);
        }
    }

    void testUcActionWithoutConfiguredAction() {
        auto cfg = chainConfig(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  uc_action = \"my_action\";\n"
            "  plugins = ( { name = \"n\"; module = \"SetField\"; key = \"nested_ran\"; value = "
            "\"1\"; } ); }\n");
        {
            Run run(cfg.get());
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT(run.r.result.actions.empty());
            CPPUNIT_ASSERT(run.has("nested_ran"));
        }
        {
            Run run(cfg.get());
            run.s.set("my_action", "reject per user");
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
            CPPUNIT_ASSERT_EQUAL(std::string("reject per user"), run.r.result.actions[0]);
            CPPUNIT_ASSERT(!run.has("nested_ran"));
        }
    }

    void testUcScoreOnCondition() {
        auto cfg = chainConfig(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  score = 5; uc_score = \"my_score\"; }\n");
        {
            Run run(cfg.get());
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT_EQUAL(std::string("5"), run.var("score"));
        }
        {
            Run run(cfg.get());
            run.s.set("my_score", "1.5");
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT_EQUAL(std::string("1.5"), run.var("score"));
            CPPUNIT_ASSERT_EQUAL(std::string("c=1.5"), run.var("score_detail"));
        }
    }

    void testUcThresholdOnScoreAction() {
        auto cfg = chainConfig(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 10; uc_threshold = "
            "\"my_threshold\";\n"
            "  action = \"reject score %SCORE%\"; }\n");
        {
            Run run(cfg.get());
            run.s.set("score", "5");
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT(run.r.result.actions.empty());  // 5 < configured 10
        }
        {
            Run run(cfg.get());
            run.s.set("score", "5");
            run.s.set("my_threshold", "4");
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
            CPPUNIT_ASSERT_EQUAL(std::string("reject score 5"), run.r.result.actions[0]);
        }
        {
            Run run(cfg.get());
            run.s.set("score", "12");
            run.s.set("my_threshold", "20");
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT(run.r.result.actions.empty());  // 12 < session's 20
        }
        {
            // Documented: a session value that is not a number leaves the configured value.
            Run run(cfg.get());
            run.s.set("score", "12");
            run.s.set("my_threshold", "lots");
            cfg->vhosts[0]->chain.run(run.r);
            CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
        }
    }

    void testUcFromSetFieldEarlierInChain() {
        // The cookbook pattern: a user-config plugin (here SetField) fills the session, a later
        // plugin reads its option from there.
        auto cfg = chainConfig(
            "{ name = \"uc\"; module = \"SetField\"; key = \"relay_action\"; value = \"defer relay "
            "limited\"; },\n"
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  action = \"reject\"; uc_action = \"relay_action\"; }\n");
        Run run(cfg.get());
        cfg->vhosts[0]->chain.run(run.r);
        CPPUNIT_ASSERT_EQUAL(size_t(1), run.r.result.actions.size());
        CPPUNIT_ASSERT_EQUAL(std::string("defer relay limited"), run.r.result.actions[0]);
    }

  private:
    int savedLevel_ = 2;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestChain);
