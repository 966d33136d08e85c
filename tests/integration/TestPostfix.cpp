// End-to-end tests with a real Postfix: a private, loopback-only Postfix (PostfixFixture)
// asks the real mtpolicyd (DaemonFixture) at END-OF-MESSAGE, and swaks plays the SMTP client.
// They check that what mtpolicyd decides reaches the SMTP client: the quota how-to chain
// (Quota -> Accounting on SQLite) lets 3 messages through and defers the 4th and 5th with the
// configured text, counting exactly 3; and a policy service that is down or whose chain fails
// gives the client a temporary failure (Postfix's smtpd_policy_service_default_action, 451
// 4.3.5), never an accept.
//
// One Postfix serves the whole suite (starting it is the slow part); the suite is wrapped in a
// CppUnit TestSetUp that stops it when the suite ends. Every test starts its own mtpolicyd on
// the policy port that Postfix was configured with; tearDown always stops it. Needs root,
// postfix and swaks: without them the tests FAIL with a message that says what is missing.
#include <cppunit/extensions/HelperMacros.h>
#include <cppunit/extensions/TestFactoryRegistry.h>
#include <cppunit/extensions/TestSetUp.h>

#include <ctime>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "DaemonFixture.h"
#include "PostfixFixture.h"
#include "mtpolicyd/sql/SqlConnection.h"

using itest::Daemon;
using itest::Postfix;
using itest::SmtpResult;

namespace {

const char* const kFrom = "a@example.org";
const char* const kTo = "b@example.net";
const char* const kQuotaText = "you exceeded your monthly limit, please insert coin";

// mtpolicyd on Postfix's policy port with the how-to chain: Quota (client_address, count,
// threshold 3) then Accounting (client_address), both on the SQLite file at `dbPath`.
std::string quotaConfig(int policyPort, const std::string& dbPath) {
    std::string cfg = R"(
log_file = "@LOG@";
pid_file = "@PID@";
log_level = 4;
port = [ "127.0.0.1:@POLICY@" ];
min_servers = 2; min_spare_servers = 1; max_spare_servers = 2; max_servers = 3;
request_timeout = 8;
connections = {
  db = { module = "Sql"; dsn = "dbi:SQLite:dbname=@DB@"; };
};
virtual_hosts = (
  { port = "@POLICY@";
    name = "accounting";
    plugins = (
      { name = "QuotaIP"; module = "Quota"; field = "client_address"; metric = "count";
        threshold = 3; action = "defer @TEXT@"; },
      { name = "AcctIP"; module = "Accounting"; fields = "client_address"; }
    );
  }
);
)";
    auto subst = [&cfg](const std::string& from, const std::string& to) {
        for (size_t pos; (pos = cfg.find(from)) != std::string::npos;)
            cfg.replace(pos, from.size(), to);
    };
    subst("@POLICY@", std::to_string(policyPort));
    subst("@DB@", dbPath);
    subst("@TEXT@", kQuotaText);
    return cfg;  // @LOG@ and @PID@ are left to Daemon::writeConfig
}

std::string monthNow() {
    char buf[32];
    time_t now = time(nullptr);
    struct tm tm {};
    localtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m", &tm);
    return buf;
}

// Lines of `text` that contain every one of `needles`.
size_t linesWith(const std::string& text, const std::vector<std::string>& needles) {
    std::istringstream in(text);
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) {
        bool all = true;
        for (const auto& s : needles) all = all && line.find(s) != std::string::npos;
        if (all) ++n;
    }
    return n;
}

// mtpolicyd's per-request summary lines for requests that came from Postfix (the readiness
// probe of DaemonFixture has instance=readiness-probe).
size_t postfixRequests(const std::string& log, const std::vector<std::string>& needles = {}) {
    std::vector<std::string> all = {"accounting: instance=", "client=127.0.0.1"};
    all.insert(all.end(), needles.begin(), needles.end());
    return linesWith(log, all);
}

}  // namespace

class TestPostfix : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestPostfix);
    CPPUNIT_TEST(testQuotaReachesSmtpClient);
    CPPUNIT_TEST(testFailingChainIsTempFailure);
    CPPUNIT_TEST(testPolicyServiceDownIsTempFailure);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override {
        try {
            pfx_ = &itest::sharedPostfix();
        } catch (const std::exception& e) {
            CPPUNIT_FAIL(std::string("cannot run a private Postfix: ") + e.what());
        }
        daemon_ = std::make_unique<Daemon>();
    }

    void tearDown() override { daemon_.reset(); }

    // The chain from mtpolicyd's quota how-to, through Postfix: messages 1-3 are accepted
    // (and discarded by Postfix), 4 and 5 get "450 4.7.1 ... <the configured text>" at end of
    // data; acct_client_address holds count 3 for 127.0.0.1; both logs show what happened.
    void testQuotaReachesSmtpClient() {
        std::string db = daemon_->path("acct.sqlite");
        std::string month = monthNow();
        startDaemon(quotaConfig(pfx_->policyPort(), db));
        size_t mark = pfx_->maillogSize();

        std::vector<SmtpResult> sent;
        for (int i = 1; i <= 5; ++i) sent.push_back(pfx_->sendMail(kFrom, kTo, std::to_string(i)));

        for (int i = 0; i < 3; ++i) {
            const SmtpResult& r = sent[i];
            CPPUNIT_ASSERT_MESSAGE("message " + std::to_string(i + 1) +
                                       " must be accepted: " + r.describe() + context(mark),
                                   r.accepted());
            CPPUNIT_ASSERT_MESSAGE(r.describe(), r.transcript.find("<-  250 2.0.0 Ok: queued as") !=
                                                     std::string::npos);
        }
        for (int i = 3; i < 5; ++i) {
            const SmtpResult& r = sent[i];
            std::string what = "message " + std::to_string(i + 1) +
                               " must be deferred at end of data: " + r.describe() + context(mark);
            // swaks: 26 = "server did not accept mail following data".
            CPPUNIT_ASSERT_EQUAL_MESSAGE(what, 26, r.exitCode);
            CPPUNIT_ASSERT_MESSAGE(what, r.queueId.empty());
            std::string reply = r.errorReply();
            CPPUNIT_ASSERT_MESSAGE(what, reply.compare(0, 10, "450 4.7.1 ") == 0);
            CPPUNIT_ASSERT_MESSAGE(what, reply.find(kQuotaText) != std::string::npos);
        }

        // The database: one row for 127.0.0.1 in this month's bucket, count 3 (the deferred
        // messages were not counted).
        mtp::SqlSettings settings;
        settings.name = "check";
        settings.dsn = mtp::Dsn::parse("dbi:SQLite:dbname=" + db);
        auto conn = mtp::makeSqlConnection(settings);
        mtp::SqlResult rows = conn->execute(
            "SELECT `key`, `time`, `count`, `count_rcpt` FROM acct_client_address", {});
        CPPUNIT_ASSERT_EQUAL_MESSAGE("rows in acct_client_address", size_t(1), rows.rows.size());
        const mtp::SqlRow& row = rows.rows[0];
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), row.at(0).value_or("NULL"));
        std::string bucket = row.at(1).value_or("NULL");
        CPPUNIT_ASSERT_MESSAGE("time bucket " + bucket, bucket == month || bucket == monthNow());
        CPPUNIT_ASSERT_EQUAL_MESSAGE("count", std::string("3"), row.at(2).value_or("NULL"));
        CPPUNIT_ASSERT_EQUAL_MESSAGE("count_rcpt", std::string("3"), row.at(3).value_or("NULL"));

        // mtpolicyd's log: five requests from Postfix, three passed, two deferred by QuotaIP;
        // each accepted message's queue id was in the request Postfix sent.
        std::string log = daemon_->log();
        CPPUNIT_ASSERT_EQUAL_MESSAGE("requests from Postfix in mtpolicyd's log\n" + log, size_t(5),
                                     postfixRequests(log));
        CPPUNIT_ASSERT_EQUAL_MESSAGE("passed requests\n" + log, size_t(3),
                                     postfixRequests(log, {"result=dunno"}));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(
            "deferred requests\n" + log, size_t(2),
            postfixRequests(log, {"plugin=QuotaIP", std::string("result=defer ") + kQuotaText}));
        CPPUNIT_ASSERT_EQUAL_MESSAGE("END-OF-MESSAGE requests\n" + log, size_t(5),
                                     linesWith(log, {"request: ", "protocol_state=END-OF-MESSAGE",
                                                     "client_address=127.0.0.1"}));
        for (int i = 0; i < 3; ++i)
            CPPUNIT_ASSERT_MESSAGE("queue_id=" + sent[i].queueId + " in mtpolicyd's log",
                                   log.find("queue_id=" + sent[i].queueId) != std::string::npos);

        // Postfix's log: the policy reply as smtpd turned it into an SMTP reply, twice; the
        // three accepted messages were handed to the discard transport.
        std::string reject =
            "reject: END-OF-MESSAGE from localhost[127.0.0.1]: 450 4.7.1 <END-OF-MESSAGE>: "
            "End-of-data rejected: " +
            std::string(kQuotaText);
        CPPUNIT_ASSERT_MESSAGE("Postfix log must show the policy reply twice" + context(mark),
                               pfx_->waitMaillog(reject, 5000, mark, 2));
        for (int i = 0; i < 3; ++i) {
            std::string sentLine = sent[i].queueId + ": to=<" + kTo + ">, relay=none";
            CPPUNIT_ASSERT_MESSAGE("discarded: " + sentLine + context(mark),
                                   pfx_->waitMaillog(sentLine, 5000, mark));
        }
        std::string pfxLog = pfx_->maillog().substr(mark);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("status=sent lines" + context(mark), size_t(3),
                                     linesWith(pfxLog, {"postfix/discard", "status=sent"}));
        CPPUNIT_ASSERT_MESSAGE("no policy-service failure expected" + context(mark),
                               pfxLog.find("Server configuration problem") == std::string::npos);
    }

    // A chain that fails inside mtpolicyd (its database cannot be opened): mtpolicyd closes
    // the connection without a reply, Postfix retries, then applies its default action — the
    // SMTP client gets 451 4.3.5, the message is not accepted.
    void testFailingChainIsTempFailure() {
        std::string db = daemon_->path("no-such-dir/acct.sqlite");
        startDaemon(quotaConfig(pfx_->policyPort(), db));
        size_t mark = pfx_->maillogSize();

        SmtpResult r = pfx_->sendMail(kFrom, kTo, "broken-db");
        std::string what = "a failing chain must be a temporary failure: " + r.describe() +
                           context(mark) + "\nmtpolicyd log:\n" + daemon_->logTail();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, 26, r.exitCode);
        CPPUNIT_ASSERT_MESSAGE(what, !r.accepted());
        CPPUNIT_ASSERT_MESSAGE(what, r.errorReply().compare(0, 10, "451 4.3.5 ") == 0);
        CPPUNIT_ASSERT_MESSAGE(
            what, r.errorReply().find("Server configuration problem") != std::string::npos);

        // mtpolicyd logged the failure and answered nothing; it is still running.
        CPPUNIT_ASSERT_MESSAGE(what, daemon_->waitLog("error while processing request", 2000));
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, size_t(0), postfixRequests(daemon_->log()));
        CPPUNIT_ASSERT_MESSAGE(what, daemon_->running());
        // Postfix: the policy server went silent (twice: smtpd_policy_service_try_limit 2), and
        // the message was refused with the default action.
        CPPUNIT_ASSERT_MESSAGE(what, pfx_->waitMaillog("problem talking to server 127.0.0.1:" +
                                                           std::to_string(pfx_->policyPort()),
                                                       5000, mark));
        CPPUNIT_ASSERT_MESSAGE(what, pfx_->waitMaillog("reject: END-OF-MESSAGE from "
                                                       "localhost[127.0.0.1]: 451 4.3.5",
                                                       5000, mark));
    }

    // mtpolicyd answers one message (accepted), then stops: the next message gets Postfix's
    // default action 451 4.3.5 — no answer from the policy service never means accept.
    void testPolicyServiceDownIsTempFailure() {
        std::string db = daemon_->path("acct.sqlite");
        startDaemon(quotaConfig(pfx_->policyPort(), db));
        size_t mark = pfx_->maillogSize();

        SmtpResult first = pfx_->sendMail(kFrom, kTo, "before-stop");
        CPPUNIT_ASSERT_MESSAGE("with mtpolicyd up: " + first.describe() + context(mark),
                               first.accepted());

        CPPUNIT_ASSERT_MESSAGE("mtpolicyd must stop cleanly", daemon_->stop());
        SmtpResult r = pfx_->sendMail(kFrom, kTo, "after-stop");
        std::string what = "with mtpolicyd down: " + r.describe() + context(mark);
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what, 26, r.exitCode);
        CPPUNIT_ASSERT_MESSAGE(what, !r.accepted());
        CPPUNIT_ASSERT_MESSAGE(what, r.errorReply().compare(0, 10, "451 4.3.5 ") == 0);
        CPPUNIT_ASSERT_MESSAGE(
            what, pfx_->waitMaillog("connect to 127.0.0.1:" + std::to_string(pfx_->policyPort()) +
                                        ": Connection refused",
                                    5000, mark));
        CPPUNIT_ASSERT_MESSAGE(what, pfx_->waitMaillog("reject: END-OF-MESSAGE from "
                                                       "localhost[127.0.0.1]: 451 4.3.5",
                                                       5000, mark));
        // Only the accepted message was counted.
        mtp::SqlSettings settings;
        settings.name = "check";
        settings.dsn = mtp::Dsn::parse("dbi:SQLite:dbname=" + db);
        mtp::SqlResult rows = mtp::makeSqlConnection(settings)->execute(
            "SELECT `count` FROM acct_client_address WHERE `key` = ?",
            {mtp::SqlParam::of(std::string("127.0.0.1"))});
        CPPUNIT_ASSERT_EQUAL(size_t(1), rows.rows.size());
        CPPUNIT_ASSERT_EQUAL(std::string("1"), rows.rows[0].at(0).value_or("NULL"));
    }

  private:
    void startDaemon(const std::string& tmpl) {
        std::string cfg = daemon_->writeConfig(tmpl);
        std::string err = daemon_->start(cfg, pfx_->policyPort());
        CPPUNIT_ASSERT_MESSAGE(err, err.empty());
    }

    // Postfix's log since `mark`, for failure messages.
    std::string context(size_t mark) const {
        return "\nPostfix log:\n" + pfx_->maillogTail(30, mark);
    }

    Postfix* pfx_ = nullptr;
    std::unique_ptr<Daemon> daemon_;
};

namespace {

// Runs the suite between starting the shared Postfix (lazily, in the first setUp) and
// stopping it, so that it does not outlive the suite.
class PostfixSuite : public CppUnit::TestSetUp {
  public:
    using CppUnit::TestSetUp::TestSetUp;

  protected:
    void tearDown() override { itest::releaseSharedPostfix(); }
};

class PostfixSuiteFactory : public CppUnit::TestFactory {
  public:
    CppUnit::Test* makeTest() override { return new PostfixSuite(TestPostfix::suite()); }
};

PostfixSuiteFactory g_factory;

struct RegisterPostfixSuite {
    RegisterPostfixSuite() {
        CppUnit::TestFactoryRegistry::getRegistry().registerFactory(&g_factory);
    }
} g_register;

}  // namespace
