// Unit tests for mtp::RequestParser, the incremental reader of the Postfix policy delegation
// protocol: every attribute Postfix sends, mtpolicyd's splitting rules (first '=', empty names
// and values, last duplicate wins, "\r\n"), requests arriving in pieces or back to back, and the
// hard limits (line length, attribute count, request size) that close the connection.
#include <cppunit/extensions/HelperMacros.h>

#include <string>
#include <utility>
#include <vector>

#include "mtpolicyd/server/RequestParser.h"

using mtp::Limits;
using mtp::Request;
using mtp::RequestParser;

namespace {

using Status = RequestParser::Status;

// A full END-OF-MESSAGE request as Postfix 3.12 sends it (every attribute of
// SMTPD_POLICY_README), in wire order.
const std::vector<std::pair<std::string, std::string>>& postfixAttributes() {
    static const std::vector<std::pair<std::string, std::string>> a = {
        {"request", "smtpd_access_policy"},
        {"protocol_state", "END-OF-MESSAGE"},
        {"protocol_name", "ESMTP"},
        {"helo_name", "mail.example.org"},
        {"queue_id", "8045F2AB23"},
        {"sender", "foo@example.org"},
        {"recipient", "bar@example.com"},
        {"recipient_count", "1"},
        {"client_address", "2001:db8::1:2:3"},
        {"client_name", "mail.example.org"},
        {"reverse_client_name", "mail.example.org"},
        {"instance", "123.456.7"},
        {"sasl_method", "plain"},
        {"sasl_username", "you"},
        {"sasl_sender", ""},
        {"size", "12345"},
        {"ccert_subject", "solaris9.porcupine.org"},
        {"ccert_issuer", "Wietse+20Venema"},
        {"ccert_fingerprint", "C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04"},
        {"ccert_pubkey_fingerprint", "68:B3:29:DA:98:93:E3:40:99:C7:D8:AD:5C:B9:C9:40"},
        {"encryption_protocol", "TLSv1.3"},
        {"encryption_cipher", "TLS_AES_256_GCM_SHA384"},
        {"encryption_keysize", "256"},
        {"etrn_domain", ""},
        {"stress", ""},
        {"client_port", "54321"},
        {"policy_context", "submission"},
        {"server_address", "10.3.2.1"},
        {"server_port", "587"},
        {"compatibility_level", "3.6"},
        {"mail_version", "3.12.0"},
        {"tls_sni", "mx.example.com"},
    };
    return a;
}

std::string postfixRequest(const char* eol = "\n") {
    std::string s;
    for (const auto& kv : postfixAttributes()) s += kv.first + "=" + kv.second + eol;
    s += eol;
    return s;
}

Limits smallLimits(size_t line, size_t attrs, size_t size) {
    Limits l;
    l.maxLineLength = line;
    l.maxAttributes = attrs;
    l.maxRequestSize = size;
    return l;
}

}  // namespace

class TestRequestParser : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestRequestParser);
    CPPUNIT_TEST(testEveryPostfixAttribute);
    CPPUNIT_TEST(testCrLfLineEndings);
    CPPUNIT_TEST(testValueContainingEquals);
    CPPUNIT_TEST(testEmptyValueAndEmptyName);
    CPPUNIT_TEST(testLastDuplicateWins);
    CPPUNIT_TEST(testUnknownAttributesKept);
    CPPUNIT_TEST(testValueBytesVerbatim);
    CPPUNIT_TEST(testOneByteAtATime);
    CPPUNIT_TEST(testTwoRequestsInOneBuffer);
    CPPUNIT_TEST(testIncompleteRequestNeedsMore);
    CPPUNIT_TEST(testLineWithoutEqualsIsError);
    CPPUNIT_TEST(testNulByteIsError);
    CPPUNIT_TEST(testNulByteSplitAcrossFeedsIsError);
    CPPUNIT_TEST(testLineAtMaxLengthAccepted);
    CPPUNIT_TEST(testLineTooLongIsError);
    CPPUNIT_TEST(testLineTooLongAcrossFeedsIsError);
    CPPUNIT_TEST(testMaxAttributesAccepted);
    CPPUNIT_TEST(testTooManyAttributesIsError);
    CPPUNIT_TEST(testRequestAtMaxSizeAccepted);
    CPPUNIT_TEST(testRequestTooLargeIsError);
    CPPUNIT_TEST(testRequestTooLargeAcrossFeedsIsError);
    CPPUNIT_TEST(testLimitsApplyPerRequest);
    CPPUNIT_TEST(testInRequest);
    CPPUNIT_TEST(testReset);
    CPPUNIT_TEST(testErrorIsSticky);
    CPPUNIT_TEST_SUITE_END();

  public:
    void testEveryPostfixAttribute() {
        RequestParser p{Limits()};
        std::string req = postfixRequest();
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(req.size(), consumed);
        CPPUNIT_ASSERT_EQUAL(postfixAttributes().size(), attrs.size());
        for (const auto& kv : postfixAttributes()) {
            CPPUNIT_ASSERT_MESSAGE("attribute " + kv.first + " missing",
                                   attrs.count(kv.first) == 1);
            CPPUNIT_ASSERT_EQUAL_MESSAGE("attribute " + kv.first, kv.second, attrs[kv.first]);
        }
    }

    void testCrLfLineEndings() {
        RequestParser p{Limits()};
        std::string req = postfixRequest("\r\n");
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(req.size(), consumed);
        CPPUNIT_ASSERT_EQUAL(postfixAttributes().size(), attrs.size());
        // No '\r' left at the end of any value.
        CPPUNIT_ASSERT_EQUAL(std::string("smtpd_access_policy"), attrs["request"]);
        CPPUNIT_ASSERT_EQUAL(std::string("mx.example.com"), attrs["tls_sni"]);
        CPPUNIT_ASSERT_EQUAL(std::string(""), attrs["stress"]);
    }

    void testValueContainingEquals() {
        RequestParser p{Limits()};
        std::string req = "sender=a=b@example.org\nccert_subject=CN=x,O=y==\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(std::string("a=b@example.org"), attrs["sender"]);
        CPPUNIT_ASSERT_EQUAL(std::string("CN=x,O=y=="), attrs["ccert_subject"]);
        CPPUNIT_ASSERT_EQUAL(size_t(2), attrs.size());
    }

    void testEmptyValueAndEmptyName() {
        RequestParser p{Limits()};
        std::string req = "sender=\n=orphan\nrecipient=x@y\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(size_t(3), attrs.size());
        CPPUNIT_ASSERT(attrs.count("sender") == 1);
        CPPUNIT_ASSERT_EQUAL(std::string(""), attrs["sender"]);
        CPPUNIT_ASSERT(attrs.count("") == 1);
        CPPUNIT_ASSERT_EQUAL(std::string("orphan"), attrs[""]);
        CPPUNIT_ASSERT_EQUAL(std::string("x@y"), attrs["recipient"]);
    }

    void testLastDuplicateWins() {
        RequestParser p{Limits()};
        std::string req = "recipient=first@x\nsize=1\nrecipient=second@x\nrecipient=third@x\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(std::string("third@x"), attrs["recipient"]);
        CPPUNIT_ASSERT_EQUAL(size_t(2), attrs.size());
    }

    void testUnknownAttributesKept() {
        RequestParser p{Limits()};
        std::string req = "request=smtpd_access_policy\nx_future_attribute=42\nfoo-bar=baz qux\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(std::string("42"), attrs["x_future_attribute"]);
        CPPUNIT_ASSERT_EQUAL(std::string("baz qux"), attrs["foo-bar"]);
    }

    void testValueBytesVerbatim() {
        // No xtext/URL decoding, white space and 8-bit bytes kept as sent.
        RequestParser p{Limits()};
        std::string req =
            "ccert_issuer=Wietse+20Venema\nhelo_name= spaced \nsender=j\xc3\xb6rg@example.org\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(std::string("Wietse+20Venema"), attrs["ccert_issuer"]);
        CPPUNIT_ASSERT_EQUAL(std::string(" spaced "), attrs["helo_name"]);
        CPPUNIT_ASSERT_EQUAL(std::string("j\xc3\xb6rg@example.org"), attrs["sender"]);
    }

    void testOneByteAtATime() {
        RequestParser p{Limits()};
        std::string req = postfixRequest("\r\n");
        Request::Attrs attrs;
        for (size_t i = 0; i < req.size(); ++i) {
            size_t consumed = 0;
            Status st = p.feed(req.data() + i, 1, consumed, attrs);
            CPPUNIT_ASSERT_EQUAL(size_t(1), consumed);
            if (i + 1 < req.size()) {
                CPPUNIT_ASSERT_MESSAGE("byte " + std::to_string(i), st == Status::NeedMore);
            } else {
                CPPUNIT_ASSERT(st == Status::Complete);
            }
        }
        CPPUNIT_ASSERT_EQUAL(postfixAttributes().size(), attrs.size());
        for (const auto& kv : postfixAttributes()) CPPUNIT_ASSERT_EQUAL(kv.second, attrs[kv.first]);
    }

    void testTwoRequestsInOneBuffer() {
        RequestParser p{Limits()};
        std::string first = "request=smtpd_access_policy\ninstance=aaa\nprotocol_state=RCPT\n\n";
        std::string second = "request=smtpd_access_policy\ninstance=bbb\nprotocol_state=DATA\n\n";
        std::string buf = first + second;
        Request::Attrs a1, a2;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(buf.data(), buf.size(), consumed, a1) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(first.size(), consumed);
        CPPUNIT_ASSERT_EQUAL(std::string("aaa"), a1["instance"]);
        CPPUNIT_ASSERT_EQUAL(std::string("RCPT"), a1["protocol_state"]);
        CPPUNIT_ASSERT_EQUAL(size_t(3), a1.size());

        size_t consumed2 = 0;
        CPPUNIT_ASSERT(p.feed(buf.data() + consumed, buf.size() - consumed, consumed2, a2) ==
                       Status::Complete);
        CPPUNIT_ASSERT_EQUAL(second.size(), consumed2);
        CPPUNIT_ASSERT_EQUAL(std::string("bbb"), a2["instance"]);
        CPPUNIT_ASSERT_EQUAL(std::string("DATA"), a2["protocol_state"]);
        CPPUNIT_ASSERT_EQUAL(size_t(3), a2.size());
    }

    void testIncompleteRequestNeedsMore() {
        RequestParser p{Limits()};
        std::string part = "request=smtpd_access_policy\nsender=a@b\nrecip";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(part.data(), part.size(), consumed, attrs) == Status::NeedMore);
        CPPUNIT_ASSERT_EQUAL(part.size(), consumed);
        std::string rest = "ient=c@d\n";
        CPPUNIT_ASSERT(p.feed(rest.data(), rest.size(), consumed, attrs) == Status::NeedMore);
        std::string end = "\n";
        CPPUNIT_ASSERT(p.feed(end.data(), end.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(std::string("c@d"), attrs["recipient"]);
        CPPUNIT_ASSERT_EQUAL(std::string("a@b"), attrs["sender"]);
    }

    void testLineWithoutEqualsIsError() {
        RequestParser p{Limits()};
        std::string req = "request=smtpd_access_policy\nGET / HTTP/1.0\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT(!p.error().empty());
    }

    void testNulByteIsError() {
        RequestParser p{Limits()};
        std::string req =
            std::string("request=smtpd_access_policy\nsender=a") + '\0' + "b@example.org\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT(p.error().find("NUL") != std::string::npos);
    }

    void testNulByteSplitAcrossFeedsIsError() {
        RequestParser p{Limits()};
        std::string a = std::string("sender=a") + '\0';
        std::string b = "b\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        Status st = p.feed(a.data(), a.size(), consumed, attrs);
        if (st != Status::Error) st = p.feed(b.data(), b.size(), consumed, attrs);
        CPPUNIT_ASSERT(st == Status::Error);
    }

    void testLineAtMaxLengthAccepted() {
        RequestParser p{smallLimits(64, 1024, 131072)};
        std::string line = "sender=" + std::string(64 - 7, 'x');  // exactly 64 bytes
        CPPUNIT_ASSERT_EQUAL(size_t(64), line.size());
        std::string req = line + "\n\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(std::string(57, 'x'), attrs["sender"]);
    }

    void testLineTooLongIsError() {
        RequestParser p{smallLimits(64, 1024, 131072)};
        std::string req = "sender=" + std::string(64 - 7 + 1, 'x') + "\n\n";  // 65 bytes
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT(p.error().find("max_line_length") != std::string::npos);
    }

    void testLineTooLongAcrossFeedsIsError() {
        // A peer that never sends a newline must be cut off once the limit is passed, without
        // waiting for the end of the line.
        RequestParser p{smallLimits(64, 1024, 1 << 20)};
        Request::Attrs attrs;
        std::string head = "sender=";
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(head.data(), head.size(), consumed, attrs) == Status::NeedMore);
        std::string chunk(10, 'y');
        Status st = Status::NeedMore;
        size_t fed = head.size();
        while (st == Status::NeedMore && fed < 1000) {
            st = p.feed(chunk.data(), chunk.size(), consumed, attrs);
            fed += chunk.size();
        }
        CPPUNIT_ASSERT(st == Status::Error);
        CPPUNIT_ASSERT(fed <= 64 + chunk.size());
        CPPUNIT_ASSERT(p.error().find("max_line_length") != std::string::npos);
    }

    void testMaxAttributesAccepted() {
        RequestParser p{smallLimits(16384, 8, 131072)};
        std::string req;
        for (int i = 0; i < 8; ++i) req += "a" + std::to_string(i) + "=v\n";
        req += "\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(size_t(8), attrs.size());
    }

    void testTooManyAttributesIsError() {
        RequestParser p{smallLimits(16384, 8, 131072)};
        std::string req;
        for (int i = 0; i < 9; ++i) req += "a" + std::to_string(i) + "=v\n";
        req += "\n";
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT(p.error().find("max_attributes") != std::string::npos);
    }

    void testRequestAtMaxSizeAccepted() {
        // 4 lines of 63 bytes + "\n" each, plus the blank line: 257 bytes.
        std::string req;
        for (int i = 0; i < 4; ++i)
            req += "a" + std::to_string(i) + "=" + std::string(60, 'v') + "\n";
        req += "\n";
        CPPUNIT_ASSERT_EQUAL(size_t(257), req.size());
        RequestParser p{smallLimits(16384, 1024, 257)};
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(size_t(4), attrs.size());
    }

    void testRequestTooLargeIsError() {
        std::string req;
        for (int i = 0; i < 4; ++i)
            req += "a" + std::to_string(i) + "=" + std::string(60, 'v') + "\n";
        req += "\n";
        RequestParser p{smallLimits(16384, 1024, 256)};
        Request::Attrs attrs;
        size_t consumed = 0;
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT(p.error().find("max_request_size") != std::string::npos);
    }

    void testRequestTooLargeAcrossFeedsIsError() {
        // Many short lines, each fed separately, no blank line: the total is what counts.
        RequestParser p{smallLimits(16384, 100000, 1024)};
        Request::Attrs attrs;
        Status st = Status::NeedMore;
        size_t total = 0;
        for (int i = 0; st == Status::NeedMore && i < 1000; ++i) {
            std::string line = "x" + std::to_string(i) + "=0123456789\n";
            size_t consumed = 0;
            st = p.feed(line.data(), line.size(), consumed, attrs);
            total += line.size();
        }
        CPPUNIT_ASSERT(st == Status::Error);
        CPPUNIT_ASSERT(total > 1024 && total < 1024 + 32);
        CPPUNIT_ASSERT(p.error().find("max_request_size") != std::string::npos);
    }

    void testLimitsApplyPerRequest() {
        // Two requests back to back, each within the limits, together above them: both pass.
        std::string one;
        for (int i = 0; i < 6; ++i)
            one += "a" + std::to_string(i) + "=" + std::string(30, 'v') + "\n";
        one += "\n";
        RequestParser p{smallLimits(16384, 8, 300)};
        std::string buf = one + one;
        Request::Attrs a1, a2;
        size_t consumed = 0, consumed2 = 0;
        CPPUNIT_ASSERT(p.feed(buf.data(), buf.size(), consumed, a1) == Status::Complete);
        CPPUNIT_ASSERT(p.feed(buf.data() + consumed, buf.size() - consumed, consumed2, a2) ==
                       Status::Complete);
        CPPUNIT_ASSERT_EQUAL(size_t(6), a2.size());
    }

    void testInRequest() {
        RequestParser p{Limits()};
        CPPUNIT_ASSERT(!p.inRequest());
        Request::Attrs attrs;
        size_t consumed = 0;
        std::string part = "request=smtp";
        CPPUNIT_ASSERT(p.feed(part.data(), part.size(), consumed, attrs) == Status::NeedMore);
        CPPUNIT_ASSERT(p.inRequest());
        std::string rest = "d_access_policy\n\n";
        CPPUNIT_ASSERT(p.feed(rest.data(), rest.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT(!p.inRequest());
        CPPUNIT_ASSERT_EQUAL(std::string("smtpd_access_policy"), attrs["request"]);
    }

    void testReset() {
        RequestParser p{smallLimits(16384, 8, 131072)};
        Request::Attrs attrs;
        size_t consumed = 0;
        // Five attributes and half a line of an unfinished request.
        std::string half = "a=1\nb=2\nc=3\nd=4\ne=5\nsender=half-a-line";
        CPPUNIT_ASSERT(p.feed(half.data(), half.size(), consumed, attrs) == Status::NeedMore);
        CPPUNIT_ASSERT(p.inRequest());
        p.reset();
        CPPUNIT_ASSERT(!p.inRequest());
        // The partial line and the attribute count are gone: eight new attributes (the
        // limit) make a complete request, and "half-a-line" does not leak into it.
        Request::Attrs fresh;
        std::string req;
        for (int i = 0; i < 7; ++i) req += "k" + std::to_string(i) + "=v\n";
        req += "recipient=r@x\n\n";
        CPPUNIT_ASSERT(p.feed(req.data(), req.size(), consumed, fresh) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(size_t(8), fresh.size());
        CPPUNIT_ASSERT_EQUAL(std::string("r@x"), fresh["recipient"]);

        // After an error, reset() clears the error and the counters.
        std::string bad = "no equals sign\n";
        CPPUNIT_ASSERT(p.feed(bad.data(), bad.size(), consumed, fresh) == Status::Error);
        CPPUNIT_ASSERT(!p.error().empty());
        p.reset();
        CPPUNIT_ASSERT(p.error().empty());
        Request::Attrs again;
        std::string eight;
        for (int i = 0; i < 8; ++i) eight += "k" + std::to_string(i) + "=v\n";
        eight += "\n";
        CPPUNIT_ASSERT(p.feed(eight.data(), eight.size(), consumed, again) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(size_t(8), again.size());
    }

    void testErrorIsSticky() {
        // Found by tests/fuzz (corpus fuzz_request_parser/regress-error-not-sticky): after an
        // error the parser went on parsing the rest of the stream, e.g. the tail of the line
        // that was too long, as if it were a new request. Every feed after an error must be
        // an error (consuming nothing) until reset().
        RequestParser p{smallLimits(64, 8, 256)};
        Request::Attrs attrs;
        size_t consumed = 0;
        std::string longLine = "sender=" + std::string(80, 'x');
        CPPUNIT_ASSERT(p.feed(longLine.data(), longLine.size(), consumed, attrs) == Status::Error);
        std::string err = p.error();
        CPPUNIT_ASSERT(err.find("max_line_length") != std::string::npos);
        // The rest of that line and a well-formed request after it.
        std::string more = "xxx\n\nrequest=smtpd_access_policy\n\n";
        consumed = 99;
        CPPUNIT_ASSERT(p.feed(more.data(), more.size(), consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT_EQUAL(size_t(0), consumed);
        CPPUNIT_ASSERT_EQUAL(err, p.error());
        CPPUNIT_ASSERT(p.feed(more.data(), 0, consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT(attrs.empty());

        // The same after a line without '=' that ended with its newline.
        RequestParser q{Limits()};
        std::string bad = "no equals sign\nrequest=smtpd_access_policy\n\n";
        CPPUNIT_ASSERT(q.feed(bad.data(), bad.size(), consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT_EQUAL(size_t(15), consumed);
        CPPUNIT_ASSERT(q.feed(bad.data() + consumed, bad.size() - consumed, consumed, attrs) == Status::Error);
        CPPUNIT_ASSERT_EQUAL(size_t(0), consumed);
        CPPUNIT_ASSERT(attrs.empty());

        // reset() ends it.
        p.reset();
        std::string ok = "request=smtpd_access_policy\n\n";
        CPPUNIT_ASSERT(p.feed(ok.data(), ok.size(), consumed, attrs) == Status::Complete);
        CPPUNIT_ASSERT_EQUAL(std::string("smtpd_access_policy"), attrs["request"]);
    }
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestRequestParser);
