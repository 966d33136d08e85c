// Unit tests for the built-in plugins against mtpolicyd 2.05's behaviour: Action, SetField,
// ClearFields, Condition, ScoreAction and AddScoreHeader, each built from config text and run
// on a request with its own session. Reproduces the expectations of upstream t/scoring.t,
// t/plugin-condition.t and t/plugin-clearfields.t.
#include <cppunit/extensions/HelperMacros.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "mtpolicyd/core/Config.h"
#include "unit/TestHelpers.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

using mtp::Config;
using mtp::Request;
using mtp::Session;

namespace {

using testhelpers::chainConfig;
using testhelpers::LogCapture;

// One request from 127.0.0.1; the session can be shared between several requests of a test.
struct Run {
    Request r;
    explicit Run(const Config& cfg, Session& s) {
        r.session = &s;
        r.vhost = cfg.vhosts[0].get();
        r.attrs["request"] = "smtpd_access_policy";
        r.attrs["instance"] = "abcd1234";
        r.attrs["client_address"] = "127.0.0.1";
    }
    Run(const Run&) = delete;
    void go() { r.vhost->chain.run(r); }
    std::string action() const { return r.result.actions.empty() ? "<none>" : r.result.actions[0]; }
};

std::string var(const Session& s, const std::string& k) { return s.get(k) ? *s.get(k) : "<unset>"; }

// Runs a one-plugin chain (plus optional trailing plugins) on a fresh request; returns the action.
struct Fixture {
    std::unique_ptr<Config> cfg;
    Session s;
    explicit Fixture(const std::string& plugins) : cfg(chainConfig(plugins)) {}
    std::string run(const std::string& attr = "", const std::string& value = "") {
        Run x(*cfg, s);
        if (!attr.empty()) x.r.attrs[attr] = value;
        x.go();
        lastAbort = x.r.result.abort;
        lastCount = x.r.result.actions.size();
        return x.action();
    }
    bool lastAbort = false;
    size_t lastCount = 0;
};

// A Condition with this re_match (a libconfig string: backslashes doubled) on helo_name, action
// "reject re"; the re_match setting is on line 4 of test.conf.
std::string reCondition(const std::string& re, const std::string& extra = "") {
    return "{ name = \"c\"; module = \"Condition\"; key = \"helo_name\";\n"
           "  re_match = \"" + re + "\"; action = \"reject re\"; " + extra + "}\n";
}

size_t longestLine(const std::string& text) {
    size_t longest = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) longest = std::max(longest, line.size());
    return longest;
}

}  // namespace

class TestPlugins : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestPlugins);
    CPPUNIT_TEST(testActionReturnsVerbatimAndAborts);
    CPPUNIT_TEST(testActionNeverContainsLineBreak);
    CPPUNIT_TEST(testSetField);
    CPPUNIT_TEST(testClearFieldsByName);
    CPPUNIT_TEST(testClearFieldsByNameList);
    CPPUNIT_TEST(testClearFieldsByPrefix);
    CPPUNIT_TEST(testClearFieldsPrefixIsLiteral);
    CPPUNIT_TEST(testConditionMatch);
    CPPUNIT_TEST(testConditionReMatch);
    CPPUNIT_TEST(testConditionLtGtMatch);
    CPPUNIT_TEST(testConditionNumifiesLikePerl);
    CPPUNIT_TEST(testConditionTestsAreOred);
    CPPUNIT_TEST(testConditionInvert);
    CPPUNIT_TEST(testConditionUndefinedNeverMatches);
    CPPUNIT_TEST(testConditionScopes);
    CPPUNIT_TEST(testConditionScoreEveryTime);
    CPPUNIT_TEST(testConditionScoreCustomField);
    CPPUNIT_TEST(testConditionActionBeatsNestedChain);
    CPPUNIT_TEST(testConditionNestedChain);
    CPPUNIT_TEST(testConditionReCatastrophicPatternsBounded);
    CPPUNIT_TEST(testConditionReLongValueOrdinaryPattern);
    CPPUNIT_TEST(testConditionRePerlSyntax);
    CPPUNIT_TEST(testConditionReInvalidPatternIsConfigError);
    CPPUNIT_TEST(testConditionReBinaryValue);
    CPPUNIT_TEST(testScoreActionUpstreamScoringT);
    CPPUNIT_TEST(testScoreActionGtBoundary);
    CPPUNIT_TEST(testScoreActionLtBoundary);
    CPPUNIT_TEST(testScoreActionUnknownIp);
    CPPUNIT_TEST(testScoreActionNoDetail);
    CPPUNIT_TEST(testScoreActionPlaceholdersReplacedOnce);
    CPPUNIT_TEST(testScoreActionNestedChain);
    CPPUNIT_TEST(testScoreActionScoreField);
    CPPUNIT_TEST(testAddScoreHeaderYes);
    CPPUNIT_TEST(testAddScoreHeaderNo);
    CPPUNIT_TEST(testAddScoreHeaderOncePerSession);
    CPPUNIT_TEST(testAddScoreHeaderBoundaryAndSpamScore);
    CPPUNIT_TEST(testAddScoreHeaderUcSpamScore);
    CPPUNIT_TEST(testAddScoreHeaderCustomNameAndField);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override {
        savedLevel_ = mtp::log::g_level;
        mtp::log::g_level = -1;  // Condition logs its matches at the plugin's log_level
    }
    void tearDown() override { mtp::log::g_level = savedLevel_; }

    // --- Action -------------------------------------------------------------------------

    void testActionReturnsVerbatimAndAborts() {
        Fixture f(
            "{ name = \"a\"; module = \"Action\"; action = \"DEFER_IF_PERMIT Service temporarily "
            "unavailable\"; },\n"
            "{ name = \"b\"; module = \"SetField\"; key = \"after\"; value = \"1\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("DEFER_IF_PERMIT Service temporarily unavailable"),
                             f.run());
        CPPUNIT_ASSERT(f.lastAbort);
        CPPUNIT_ASSERT_EQUAL(size_t(1), f.lastCount);
        CPPUNIT_ASSERT(f.s.get("after") == nullptr);
        // Same answer every time.
        CPPUNIT_ASSERT_EQUAL(std::string("DEFER_IF_PERMIT Service temporarily unavailable"),
                             f.run());
    }

    void testActionNeverContainsLineBreak() {
        // An action is one protocol line; a line break would let it inject reply attributes.
        Fixture f("{ name = \"a\"; module = \"Action\"; action = \"reject a\\naction=OK\"; }\n");
        std::string a = f.run();
        CPPUNIT_ASSERT_MESSAGE(a, a.find('\n') == std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(a, a.find('\r') == std::string::npos);
        CPPUNIT_ASSERT(a.find("reject a") == 0);
    }

    // --- SetField -----------------------------------------------------------------------

    void testSetField() {
        Fixture f(
            "{ name = \"s\"; module = \"SetField\"; key = \"quota_count\"; value = \"100000\"; },\n"
            "{ name = \"t\"; module = \"SetField\"; key = \"empty\"; value = \"\"; }\n");
        f.s.set("quota_count", "5");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());
        CPPUNIT_ASSERT(!f.lastAbort);
        CPPUNIT_ASSERT_EQUAL(std::string("100000"), var(f.s, "quota_count"));
        CPPUNIT_ASSERT(f.s.get("empty") != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string(""), var(f.s, "empty"));
    }

    // --- ClearFields --------------------------------------------------------------------

    void testClearFieldsByName() {
        // upstream t/plugin-clearfields.t
        Fixture f(
            "{ name = \"c\"; module = \"ClearFields\"; fields = \"field1,field2 , field3\"; }\n");
        f.s.set("field1", "1");
        f.s.set("field2", "2");
        f.s.set("field3", "3");
        f.s.set("field4", "4");
        f.s.set("field10", "10");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());
        CPPUNIT_ASSERT(f.s.get("field1") == nullptr);
        CPPUNIT_ASSERT(f.s.get("field2") == nullptr);
        CPPUNIT_ASSERT(f.s.get("field3") == nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("4"), var(f.s, "field4"));
        CPPUNIT_ASSERT_EQUAL(std::string("10"), var(f.s, "field10"));  // names are exact
    }

    void testClearFieldsByNameList() {
        Fixture f("{ name = \"c\"; module = \"ClearFields\"; fields = [ \"a\", \"b\" ]; }\n");
        f.s.set("a", "1");
        f.s.set("b", "2");
        f.s.set("c", "3");
        f.run();
        CPPUNIT_ASSERT(f.s.get("a") == nullptr);
        CPPUNIT_ASSERT(f.s.get("b") == nullptr);
        CPPUNIT_ASSERT(f.s.get("c") != nullptr);
    }

    void testClearFieldsByPrefix() {
        Fixture f(
            "{ name = \"c\"; module = \"ClearFields\"; fields = \"exact\"; fields_prefix = "
            "\"greylist-, rbl-\"; }\n");
        f.s.set("exact", "x");
        f.s.set("greylist-ticket", "1");
        f.s.set("greylist-is_autowl", "1");
        f.s.set("rbl-spamhaus-result", "1");
        f.s.set("my-greylist-note", "kept");
        f.s.set("score", "3");
        f.run();
        CPPUNIT_ASSERT(f.s.get("exact") == nullptr);
        CPPUNIT_ASSERT(f.s.get("greylist-ticket") == nullptr);
        CPPUNIT_ASSERT(f.s.get("greylist-is_autowl") == nullptr);
        CPPUNIT_ASSERT(f.s.get("rbl-spamhaus-result") == nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("kept"),
                             var(f.s, "my-greylist-note"));  // prefix, not substring
        CPPUNIT_ASSERT_EQUAL(std::string("3"), var(f.s, "score"));
    }

    void testClearFieldsPrefixIsLiteral() {
        // mtpolicyd matches /^\Qprefix\E/: regex characters in the prefix are literal.
        Fixture f("{ name = \"c\"; module = \"ClearFields\"; fields_prefix = \"a.b\"; }\n");
        f.s.set("a.b-1", "1");
        f.s.set("axb-1", "kept");
        f.run();
        CPPUNIT_ASSERT(f.s.get("a.b-1") == nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("kept"), var(f.s, "axb-1"));
    }

    // --- Condition ----------------------------------------------------------------------

    void testConditionMatch() {
        Fixture f(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"192.168.0.1\";\n"
            "  action = \"reject matched\"; },\n"
            "{ name = \"after\"; module = \"SetField\"; key = \"after\"; value = \"1\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject matched"), f.run("client_address", "192.168.0.1"));
        CPPUNIT_ASSERT(f.lastAbort);
        CPPUNIT_ASSERT(f.s.get("after") == nullptr);
        // Exact string equality: no prefix or case-insensitive match.
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("client_address", "192.168.0.10"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("client_address", "192.168.0"));
        CPPUNIT_ASSERT(!f.lastAbort);
        CPPUNIT_ASSERT(f.s.get("after") != nullptr);
    }

    void testConditionReMatch() {
        Fixture f(
            "{ name = \"c\"; module = \"Condition\"; key = \"helo_name\";\n"
            "  re_match = \"^mail\\\\.example\\\\.(org|com)$\"; action = \"reject helo\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject helo"), f.run("helo_name", "mail.example.org"));
        CPPUNIT_ASSERT_EQUAL(std::string("reject helo"), f.run("helo_name", "mail.example.com"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("helo_name", "mailxexample.org"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("helo_name", "mail.example.net"));
        // Unanchored patterns search anywhere, like Perl's m//.
        Fixture g(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_name\"; re_match = "
            "\"dynamic\"; action = \"reject dyn\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject dyn"),
                             g.run("client_name", "host-1.dynamic.example.net"));
    }

    void testConditionLtGtMatch() {
        Fixture gt(
            "{ name = \"c\"; module = \"Condition\"; key = \"recipient_count\"; gt_match = 5; "
            "action = \"reject many\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject many"), gt.run("recipient_count", "6"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"),
                             gt.run("recipient_count", "5"));  // strictly greater
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), gt.run("recipient_count", "4"));
        CPPUNIT_ASSERT_EQUAL(std::string("reject many"), gt.run("recipient_count", "5.5"));

        Fixture lt(
            "{ name = \"c\"; module = \"Condition\"; key = \"size\"; lt_match = 1000; action = "
            "\"reject small\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject small"), lt.run("size", "999"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), lt.run("size", "1000"));  // strictly lower
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), lt.run("size", "20000"));
    }

    void testConditionNumifiesLikePerl() {
        // Perl numifies "12abc" to 12 and "abc" or "" to 0.
        Fixture lt(
            "{ name = \"c\"; module = \"Condition\"; key = \"size\"; lt_match = 1; action = "
            "\"reject zero\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject zero"), lt.run("size", ""));
        CPPUNIT_ASSERT_EQUAL(std::string("reject zero"), lt.run("size", "abc"));
        Fixture gt(
            "{ name = \"c\"; module = \"Condition\"; key = \"size\"; gt_match = 10; action = "
            "\"reject big\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject big"), gt.run("size", "12abc"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), gt.run("size", "abc12"));
    }

    void testConditionTestsAreOred() {
        Fixture f(
            "{ name = \"c\"; module = \"Condition\"; key = \"recipient_count\";\n"
            "  match = \"abc\"; re_match = \"^9\"; lt_match = 2; gt_match = 100; action = \"reject "
            "or\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject or"), f.run("recipient_count", "abc"));  // match
        CPPUNIT_ASSERT_EQUAL(std::string("reject or"), f.run("recipient_count", "95"));  // re_match
        CPPUNIT_ASSERT_EQUAL(std::string("reject or"), f.run("recipient_count", "1"));   // lt_match
        CPPUNIT_ASSERT_EQUAL(std::string("reject or"),
                             f.run("recipient_count", "200"));                        // gt_match
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("recipient_count", "50"));  // none
    }

    void testConditionInvert() {
        Fixture f(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  invert = true; action = \"reject not local\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject not local"), f.run("client_address", "10.0.0.1"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("client_address", "127.0.0.1"));
        // mtpolicyd's form: invert = 1
        Fixture g(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  invert = 1; action = \"reject not local\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject not local"), g.run("client_address", "10.0.0.1"));
    }

    void testConditionUndefinedNeverMatches() {
        Fixture f(
            "{ name = \"c\"; module = \"Condition\"; key = \"sasl_username\"; match = \"bob\";\n"
            "  invert = true; score = 3; action = \"reject unauthenticated\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());  // attribute absent
        CPPUNIT_ASSERT(f.s.get("score") == nullptr);
        // Defined but empty is a value: it does not equal "bob", inverted it matches.
        CPPUNIT_ASSERT_EQUAL(std::string("reject unauthenticated"), f.run("sasl_username", ""));
        // Same for a session key that is not set.
        Fixture g(
            "{ name = \"c\"; module = \"Condition\"; key = \"session:user_policy\"; match = "
            "\"x\";\n"
            "  invert = true; action = \"reject\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), g.run());
        // gt/lt do not treat an absent value as 0 either.
        Fixture h(
            "{ name = \"c\"; module = \"Condition\"; key = \"size\"; lt_match = 10; action = "
            "\"reject\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), h.run());
    }

    void testConditionScopes() {
        // upstream t/request.t and t/plugin-condition.t: request:, r:, bare, session:, s:
        const char* keys[] = {"request:sender", "r:sender", "sender"};
        for (const char* k : keys) {
            Fixture f(std::string("{ name = \"c\"; module = \"Condition\"; key = \"") + k +
                      "\"; match = \"a@b.c\"; action = \"reject req\"; }\n");
            f.s.set("sender", "x@y.z");  // a session key of the same name must not be used
            CPPUNIT_ASSERT_EQUAL_MESSAGE(k, std::string("reject req"), f.run("sender", "a@b.c"));
        }
        const char* skeys[] = {"session:user_policy", "s:user_policy"};
        for (const char* k : skeys) {
            Fixture f(std::string("{ name = \"c\"; module = \"Condition\"; key = \"") + k +
                      "\"; match = \"strict\"; action = \"reject sess\"; }\n");
            // The request attribute of the same name is not used.
            CPPUNIT_ASSERT_EQUAL_MESSAGE(k, std::string("<none>"), f.run("user_policy", "strict"));
            f.s.set("user_policy", "strict");
            CPPUNIT_ASSERT_EQUAL_MESSAGE(k, std::string("reject sess"), f.run());
        }
        // Only the first ':' separates the scope.
        Fixture f(
            "{ name = \"c\"; module = \"Condition\"; key = \"s:a:b\"; match = \"v\"; action = "
            "\"reject colon\"; }\n");
        f.s.set("a:b", "v");
        CPPUNIT_ASSERT_EQUAL(std::string("reject colon"), f.run());
    }

    void testConditionScoreEveryTime() {
        Fixture f(
            "{ name = \"local\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\"; score = 2.5; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());
        CPPUNIT_ASSERT(!f.lastAbort);
        CPPUNIT_ASSERT_EQUAL(std::string("2.5"), var(f.s, "score"));
        CPPUNIT_ASSERT_EQUAL(std::string("local=2.5"), var(f.s, "score_detail"));
        f.run();  // same session again: no once-per-session guard in mtpolicyd
        CPPUNIT_ASSERT_EQUAL(std::string("5"), var(f.s, "score"));
        CPPUNIT_ASSERT_EQUAL(std::string("local=2.5, local=2.5"), var(f.s, "score_detail"));
        f.run("client_address", "10.0.0.1");  // no match, no score
        CPPUNIT_ASSERT_EQUAL(std::string("5"), var(f.s, "score"));
    }

    void testConditionScoreCustomField() {
        Fixture f(
            "{ name = \"neg\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  score = -1; score_field = \"spam\"; action = \"dunno\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), f.run());
        CPPUNIT_ASSERT_EQUAL(std::string("-1"), var(f.s, "spam"));
        CPPUNIT_ASSERT_EQUAL(std::string("neg=-1"), var(f.s, "spam_detail"));
        CPPUNIT_ASSERT(f.s.get("score") == nullptr);
    }

    void testConditionActionBeatsNestedChain() {
        Fixture f(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  action = \"reject direct\";\n"
            "  plugins = ( { name = \"n\"; module = \"SetField\"; key = \"nested\"; value = \"1\"; "
            "} ); }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject direct"), f.run());
        CPPUNIT_ASSERT(f.s.get("nested") == nullptr);
    }

    void testConditionNestedChain() {
        Fixture f(
            "{ name = \"c\"; module = \"Condition\"; key = \"client_address\"; match = "
            "\"127.0.0.1\";\n"
            "  plugins = ( { name = \"n\"; module = \"SetField\"; key = \"nested\"; value = \"1\"; "
            "},\n"
            "              { name = \"na\"; module = \"Action\"; action = \"reject nested\"; } ); "
            "}\n");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("client_address", "10.0.0.1"));
        CPPUNIT_ASSERT(f.s.get("nested") == nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("reject nested"), f.run());
        CPPUNIT_ASSERT(f.lastAbort);
        CPPUNIT_ASSERT(f.s.get("nested") != nullptr);
    }

    void testConditionReCatastrophicPatternsBounded() {
        // std::regex recursed once per character of the value: ^(a|b)*$ on ~16,000 characters
        // (a request value within the default max_line_length) overflowed the stack and killed
        // the worker. PCRE2's match, depth and JIT stack limits stop such a match: "no match",
        // with one warning that quotes only the start of the value.
        const char* patterns[] = {"^(a|b)*$", "(a+)+$", "(a|aa)+$", "^(\\\\w+\\\\s?)*$"};
        for (size_t n : {size_t(16384), size_t(1) << 20}) {
            for (const char* re : patterns) {
                Fixture f(reCondition(re));
                LogCapture logs;
                std::string what = std::string(re) + " on " + std::to_string(n) + " characters";
                auto t0 = std::chrono::steady_clock::now();
                // Never a match in theory ('!' at the end): a limit may only make it "no match".
                CPPUNIT_ASSERT_EQUAL_MESSAGE(what, std::string("<none>"),
                                             f.run("helo_name", std::string(n, 'a') + "!"));
                // A match in theory for the first pattern: a limit may turn it into "no match".
                std::string a = f.run("helo_name", std::string(n, 'a') + "b");
                CPPUNIT_ASSERT_MESSAGE(what + ": " + a, a == "reject re" || a == "<none>");
                double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                CPPUNIT_ASSERT_MESSAGE(what + ": took " + std::to_string(secs) + " s", secs < 10);
                std::string logged = logs.text();
                if (std::string(re) == "(a+)+$") {  // certain to hit the match limit
                    CPPUNIT_ASSERT_MESSAGE(what + ": " + logged,
                                           logged.find("re_match on helo_name") != std::string::npos);
                    CPPUNIT_ASSERT_MESSAGE(what + ": " + logged, logged.find("treated as no match") != std::string::npos);
                    CPPUNIT_ASSERT_MESSAGE(what + ": " + logged, logged.find(std::to_string(n + 1) + " bytes") !=
                                                                     std::string::npos);
                }
                CPPUNIT_ASSERT_MESSAGE(what + ": value logged whole", longestLine(logged) < 400);
            }
        }
        // A limit hit is "no match", so invert turns it into a match (as Perl's eventual answer).
        Fixture inv(reCondition("(a+)+$", "invert = true; "));
        LogCapture logs;
        CPPUNIT_ASSERT_EQUAL(std::string("reject re"), inv.run("helo_name", std::string(16384, 'a') + "!"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), inv.run("helo_name", "aaa"));
    }

    void testConditionReLongValueOrdinaryPattern() {
        // The limits do not turn ordinary patterns on long values into "no match": the sample
        // configuration's HELO address literal pattern on values of max_line_length.
        Fixture f(reCondition("^\\\\[?[0-9.:a-fA-F]+\\\\]?$"));
        LogCapture logs;
        std::string hex(16384, 'f');
        CPPUNIT_ASSERT_EQUAL(std::string("reject re"), f.run("helo_name", hex));
        CPPUNIT_ASSERT_EQUAL(std::string("reject re"), f.run("helo_name", "[" + hex + "]"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("helo_name", hex + "!"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run("helo_name", "[" + hex + "]x"));
        CPPUNIT_ASSERT_EQUAL(std::string(""), logs.text());
        // A search through 1 MB for a literal.
        Fixture g(reCondition("needle"));
        CPPUNIT_ASSERT_EQUAL(std::string("reject re"), g.run("helo_name", std::string(1 << 20, 'x') + "needle"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), g.run("helo_name", std::string(1 << 20, 'x')));
        CPPUNIT_ASSERT_EQUAL(std::string(""), logs.text());
    }

    void testConditionRePerlSyntax() {
        // mtpolicyd configs are written for Perl regexes; none of these is ECMAScript syntax
        // except \d and \b, which std::regex took as well.
        struct Case {
            const char* re;  // libconfig text: backslashes doubled
            const char* yes;
            const char* no;
        };
        const Case cases[] = {
            {"^\\\\d+$", "12345", "12a45"},
            {"(?i)^foo", "FoO.example.org", "xfoo"},
            {"\\\\bword\\\\b", "a word here", "swordfish"},
            {"^(?=.*@)(?!.*\\\\.invalid$)", "bob@example.org", "bob@example.invalid"},
            {"(?<=mail)\\\\d", "mail1.example.org", "smtp1.example.org"},
            {"\\\\Amx\\\\d\\\\z", "mx1", "mx1\n"},
            {"^\\\\w+\\\\s\\\\S+$", "abc def", "abc  def"},
            {"^[[:alpha:]]+\\\\.(?:org|net)$", "example.net", "example.com"},
            {"^\\\\Qa.b\\\\E$", "a.b", "axb"},
            {"^(?x) a b c $", "abc", "a b c"},
            {"^(\\\\w)\\\\1$", "ZZ", "Zz"},
            {"^a{2,3}+$", "aaa", "aaaa"},
        };
        for (const Case& c : cases) {
            Fixture f(reCondition(c.re));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(std::string(c.re) + " on " + c.yes, std::string("reject re"),
                                         f.run("helo_name", c.yes));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(std::string(c.re) + " on " + c.no, std::string("<none>"),
                                         f.run("helo_name", c.no));
        }
    }

    void testConditionReInvalidPatternIsConfigError() {
        // PCRE2's message and offset, with file:line, plugin and key.
        struct Case {
            const char* re;
            const char* says;
        };
        const Case cases[] = {
            {"(abc", "missing closing parenthesis"},
            {"a{3,2}", "numbers out of order"},
            {"[z-a]", "range out of order"},
            {"(?<n>a)\\\\k<m>", "reference to non-existent subpattern"},
            {"(*UTF)abc", "UTF is disabled"},  // no UTF mode: values are bytes
            {"a\\\\", "\\ at end of pattern"},
        };
        for (const Case& c : cases) {
            std::string msg;
            try {
                Fixture f(reCondition(c.re));
            } catch (const mtp::ConfigError& e) {
                msg = e.what();
            }
            CPPUNIT_ASSERT_MESSAGE(std::string("no ConfigError for ") + c.re, !msg.empty());
            for (const char* part : {"test.conf:4:", "plugin 'c'", "key 're_match'", "at offset", c.says})
                CPPUNIT_ASSERT_MESSAGE(std::string("'") + part + "' not in: " + msg, msg.find(part) != std::string::npos);
        }
    }

    void testConditionReBinaryValue() {
        // Values are bytes (no UTF mode): NUL bytes and invalid UTF-8 are matched like any other
        // bytes, never an error.
        const char raw[] = "mx\0\xff\xfe\xc3(\xed\xa0\x80.example\x80";
        const std::string value(raw, sizeof raw - 1);
        LogCapture logs;
        Fixture dot(reCondition("^mx.+example.$"));
        CPPUNIT_ASSERT_EQUAL(std::string("reject re"), dot.run("helo_name", value));
        Fixture bytes(reCondition("\\\\x00\\\\xff\\\\xfe"));
        CPPUNIT_ASSERT_EQUAL(std::string("reject re"), bytes.run("helo_name", value));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), bytes.run("helo_name", std::string("\xff\xfe")));
        Fixture none(reCondition("^[a-z.]+$"));
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), none.run("helo_name", value));
        Fixture inv(reCondition("^[a-z.]+$", "invert = true; "));
        CPPUNIT_ASSERT_EQUAL(std::string("reject re"), inv.run("helo_name", value));
        CPPUNIT_ASSERT_EQUAL(std::string(""), logs.text());
    }

    // --- ScoreAction --------------------------------------------------------------------

    void testScoreActionUpstreamScoringT() {
        Fixture f(
            "{ name = \"score-action\"; module = \"ScoreAction\"; threshold = 10;\n"
            "  action = \"reject sender ip %IP% is blocked (score=%SCORE%%SCORE_DETAIL%)\"; }\n");
        f.s.addScore("score", "ZUMSEL", 5);
        f.s.addScore("score", "BLA", 2.5);
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());  // 7.5 < 10
        CPPUNIT_ASSERT(!f.lastAbort);
        f.s.addScore("score", "BLUB", 2.5);
        CPPUNIT_ASSERT_EQUAL(
            std::string(
                "reject sender ip 127.0.0.1 is blocked (score=10, ZUMSEL=5, BLA=2.5, BLUB=2.5)"),
            f.run());
        CPPUNIT_ASSERT(f.lastAbort);
    }

    void testScoreActionGtBoundary() {
        Fixture f(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 5; match = \"gt\"; action = "
            "\"reject %SCORE%\"; }\n");
        f.s.set("score", "4.9");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());
        f.s.set("score", "5");
        CPPUNIT_ASSERT_EQUAL(std::string("reject 5"), f.run());  // fires at score >= threshold
        f.s.set("score", "7.25");
        CPPUNIT_ASSERT_EQUAL(std::string("reject 7.25"), f.run());
        // Default match is gt; unset score counts as 0.
        Fixture g(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 0; action = \"reject zero\"; "
            "}\n");
        CPPUNIT_ASSERT_EQUAL(std::string("reject zero"), g.run());
        Fixture h(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 0.5; action = \"reject half\"; "
            "}\n");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), h.run());
    }

    void testScoreActionLtBoundary() {
        Fixture f(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = -2; match = \"lt\"; action = "
            "\"OK good %SCORE%\"; }\n");
        f.s.set("score", "-1.5");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());
        f.s.set("score", "-2");
        CPPUNIT_ASSERT_EQUAL(std::string("OK good -2"), f.run());  // fires at score <= threshold
        f.s.set("score", "-10");
        CPPUNIT_ASSERT_EQUAL(std::string("OK good -10"), f.run());
    }

    void testScoreActionUnknownIp() {
        Fixture f(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 1; action = \"reject ip "
            "%IP%\"; }\n");
        f.s.set("score", "3");
        Run x(*f.cfg, f.s);
        x.r.attrs.erase("client_address");
        x.go();
        CPPUNIT_ASSERT_EQUAL(std::string("reject ip unknown"), x.action());
        // IPv6 as Postfix sends it.
        CPPUNIT_ASSERT_EQUAL(std::string("reject ip 2001:db8::1"),
                             f.run("client_address", "2001:db8::1"));
    }

    void testScoreActionNoDetail() {
        // Score set without detail (e.g. by SetField): %SCORE_DETAIL% becomes empty.
        Fixture f(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 10;\n"
            "  action = \"reject (score=%SCORE%%SCORE_DETAIL%)\"; }\n");
        f.s.set("score", "10");
        CPPUNIT_ASSERT_EQUAL(std::string("reject (score=10)"), f.run());
    }

    void testScoreActionPlaceholdersReplacedOnce() {
        Fixture f(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 1;\n"
            "  action = \"reject %IP% %IP% %SCORE% %SCORE% x%SCORE_DETAIL% y%SCORE_DETAIL%\"; }\n");
        f.s.addScore("score", "A", 3);
        CPPUNIT_ASSERT_EQUAL(std::string("reject 127.0.0.1 %IP% 3 %SCORE% x, A=3 y%SCORE_DETAIL%"),
                             f.run());
    }

    void testScoreActionNestedChain() {
        Fixture f(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 5;\n"
            "  plugins = ( { name = \"n\"; module = \"SetField\"; key = \"nested\"; value = \"1\"; "
            "},\n"
            "              { name = \"na\"; module = \"Action\"; action = \"defer scored\"; } ); "
            "},\n"
            "{ name = \"after\"; module = \"SetField\"; key = \"after\"; value = \"1\"; }\n");
        f.s.set("score", "4");
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());
        CPPUNIT_ASSERT(f.s.get("nested") == nullptr);
        CPPUNIT_ASSERT(f.s.get("after") != nullptr);
        f.s.erase("after");
        f.s.set("score", "6");
        CPPUNIT_ASSERT_EQUAL(std::string("defer scored"), f.run());
        CPPUNIT_ASSERT(f.s.get("nested") != nullptr);
        CPPUNIT_ASSERT(f.s.get("after") == nullptr);
    }

    void testScoreActionScoreField() {
        Fixture f(
            "{ name = \"sa\"; module = \"ScoreAction\"; threshold = 5; score_field = \"spam\";\n"
            "  action = \"reject spam=%SCORE%%SCORE_DETAIL%\"; }\n");
        f.s.set("score", "100");  // the default field is not looked at
        CPPUNIT_ASSERT_EQUAL(std::string("<none>"), f.run());
        f.s.addScore("spam", "rbl", 6);
        CPPUNIT_ASSERT_EQUAL(std::string("reject spam=6, rbl=6"), f.run());
    }

    // --- AddScoreHeader -----------------------------------------------------------------

    void testAddScoreHeaderYes() {
        // upstream t/scoring.t
        Fixture f(
            "{ name = \"score-header\"; module = \"AddScoreHeader\"; },\n"
            "{ name = \"after\"; module = \"SetField\"; key = \"after\"; value = \"1\"; }\n");
        f.s.addScore("score", "ZUMSEL", 5);
        f.s.addScore("score", "BLA", 2.5);
        f.s.addScore("score", "BLUB", 2.5);
        CPPUNIT_ASSERT_EQUAL(
            std::string("PREPEND X-MtScore: YES score=10 [ZUMSEL=5, BLA=2.5, BLUB=2.5]"), f.run());
        CPPUNIT_ASSERT(f.lastAbort);
        CPPUNIT_ASSERT(f.s.get("after") == nullptr);
    }

    void testAddScoreHeaderNo() {
        Fixture f(
            "{ name = \"h\"; module = \"AddScoreHeader\"; },\n"
            "{ name = \"after\"; module = \"SetField\"; key = \"after\"; value = \"1\"; }\n");
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: NO score=0"), f.run());
        CPPUNIT_ASSERT(f.lastAbort);  // always aborts
        CPPUNIT_ASSERT(f.s.get("after") == nullptr);
    }

    void testAddScoreHeaderOncePerSession() {
        Fixture f(
            "{ name = \"h\"; module = \"AddScoreHeader\"; },\n"
            "{ name = \"after\"; module = \"SetField\"; key = \"after\"; value = \"1\"; }\n");
        f.s.addScore("score", "x", 1);
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: NO score=1 [x=1]"), f.run());
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), f.run());
        CPPUNIT_ASSERT(f.lastAbort);  // dunno aborts too
        CPPUNIT_ASSERT(f.s.get("after") == nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), f.run());
        // The flag mtpolicyd uses.
        CPPUNIT_ASSERT(f.s.get("score-score-tag") != nullptr);
        // Another message (a new session) gets the header again.
        Session other;
        Run x(*f.cfg, other);
        x.go();
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: NO score=0"), x.action());
    }

    void testAddScoreHeaderBoundaryAndSpamScore() {
        Fixture f("{ name = \"h\"; module = \"AddScoreHeader\"; }\n");
        f.s.set("score", "5");  // default spam_score 5: score >= spam_score says YES
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: YES score=5"), f.run());
        Fixture g("{ name = \"h\"; module = \"AddScoreHeader\"; spam_score = 7.5; }\n");
        g.s.set("score", "7");
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: NO score=7"), g.run());
        Fixture h("{ name = \"h\"; module = \"AddScoreHeader\"; spam_score = \"7.5\"; }\n");
        h.s.set("score", "7.5");
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: YES score=7.5"), h.run());
    }

    void testAddScoreHeaderUcSpamScore() {
        Fixture f(
            "{ name = \"h\"; module = \"AddScoreHeader\"; uc_spam_score = \"user_spam_score\"; "
            "}\n");
        f.s.set("score", "3");
        f.s.set("user_spam_score", "2");
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: YES score=3"), f.run());
        Fixture g(
            "{ name = \"h\"; module = \"AddScoreHeader\"; uc_spam_score = \"user_spam_score\"; "
            "}\n");
        g.s.set("score", "3");  // session key unset: default 5 applies
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-MtScore: NO score=3"), g.run());
    }

    void testAddScoreHeaderCustomNameAndField() {
        Fixture f(
            "{ name = \"h\"; module = \"AddScoreHeader\"; header_name = \"X-Policy-Score\"; "
            "score_field = \"spam\"; }\n");
        f.s.addScore("spam", "rbl", 6);
        f.s.addScore("score", "other", 1);
        CPPUNIT_ASSERT_EQUAL(std::string("PREPEND X-Policy-Score: YES score=6 [rbl=6]"), f.run());
        CPPUNIT_ASSERT(f.s.get("score-spam-tag") != nullptr);
        CPPUNIT_ASSERT_EQUAL(std::string("dunno"), f.run());
    }

  private:
    int savedLevel_ = 2;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestPlugins);
