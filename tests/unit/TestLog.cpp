// Unit tests for the logging backend's journal priorities: on a standard error that is
// systemd's journal stream (JOURNAL_STREAM names the device:inode of fd 2), each line starts
// with "<N>", the syslog priority of its level; otherwise, and in a log_file, lines are
// unchanged. Standard error is redirected to a pipe for the test and restored afterwards.
#include <cppunit/extensions/HelperMacros.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "mtpolicyd/util/Log.h"

namespace {

std::string devIno(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return "";
    return std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" +
           std::to_string(static_cast<unsigned long long>(st.st_ino));
}

std::vector<std::string> linesOf(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
}

// Points fd 2 at a pipe while it lives; restores fd 2, JOURNAL_STREAM, the level and the
// destination (stderr) when it goes, also when an assertion fails.
class CapturedStderr {
  public:
    CapturedStderr() {
        const char* env = std::getenv("JOURNAL_STREAM");
        hadEnv_ = env != nullptr;
        if (env) savedEnv_ = env;
        savedLevel_ = mtp::log::g_level;
        if (::pipe(pipe_) != 0) return;
        saved_ = ::dup(2);
        ::dup2(pipe_[1], 2);
    }
    ~CapturedStderr() {
        restore();
        if (pipe_[0] >= 0) ::close(pipe_[0]);
    }
    bool ok() const { return saved_ >= 0; }
    std::string pipeDevIno() const { return devIno(pipe_[1]); }

    // Restores fd 2 and returns what was written to it.
    std::string finish() {
        restore();
        std::string out;
        char buf[4096];
        ssize_t n;
        while (pipe_[0] >= 0 && (n = ::read(pipe_[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
        return out;
    }

  private:
    void restore() {
        if (saved_ >= 0) {
            ::dup2(saved_, 2);
            ::close(saved_);
            saved_ = -1;
        }
        if (pipe_[1] >= 0) {
            ::close(pipe_[1]);  // the read end sees EOF after what was written
            pipe_[1] = -1;
        }
        if (hadEnv_)
            ::setenv("JOURNAL_STREAM", savedEnv_.c_str(), 1);
        else
            ::unsetenv("JOURNAL_STREAM");
        mtp::log::toStderr("unit-tests");
        mtp::log::g_level = savedLevel_;
    }

    int pipe_[2] = {-1, -1};
    int saved_ = -1;
    bool hadEnv_ = false;
    std::string savedEnv_;
    int savedLevel_ = 0;
};

void logOneOfEach() {
    mtp::log::g_level = mtp::log::Debug;
    MTP_LOG(mtp::log::Err, "an error");
    MTP_LOG(mtp::log::Warning, "a warning");
    MTP_LOG(mtp::log::Notice, "a notice");
    MTP_LOG(mtp::log::Info, "an info");
    MTP_LOG(mtp::log::Debug, "a debug message");
}

}  // namespace

class TestLog : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestLog);
    CPPUNIT_TEST(testJournalStreamGetsPriorities);
    CPPUNIT_TEST(testNoJournalStreamNoPrefix);
    CPPUNIT_TEST(testJournalStreamOfAnotherFdNoPrefix);
    CPPUNIT_TEST(testMalformedJournalStreamNoPrefix);
    CPPUNIT_TEST(testLogFileNeverPrefixed);
    CPPUNIT_TEST_SUITE_END();

  public:
    void testJournalStreamGetsPriorities() {
        CapturedStderr cap;
        CPPUNIT_ASSERT(cap.ok());
        ::setenv("JOURNAL_STREAM", cap.pipeDevIno().c_str(), 1);
        mtp::log::toStderr("unit-tests");
        logOneOfEach();
        auto lines = linesOf(cap.finish());
        CPPUNIT_ASSERT_EQUAL(size_t(5), lines.size());
        const char* prefixes[] = {"<3>", "<4>", "<5>", "<6>", "<7>"};
        const char* names[] = {": error: an error", ": warning: a warning", ": notice: a notice",
                               ": info: an info", ": debug: a debug message"};
        std::string pid = "unit-tests[" + std::to_string(getpid()) + "]";
        for (size_t i = 0; i < 5; ++i) {
            CPPUNIT_ASSERT_MESSAGE(lines[i], lines[i].rfind(prefixes[i], 0) == 0);
            CPPUNIT_ASSERT_MESSAGE(lines[i], lines[i].find(pid + names[i]) != std::string::npos);
            // Only the prefix: the rest is the usual line, starting with the timestamp.
            CPPUNIT_ASSERT_MESSAGE(lines[i], lines[i].size() > 4 && lines[i][3] >= '0' && lines[i][3] <= '9');
        }
    }

    void testNoJournalStreamNoPrefix() {
        CapturedStderr cap;
        CPPUNIT_ASSERT(cap.ok());
        ::unsetenv("JOURNAL_STREAM");
        mtp::log::toStderr("unit-tests");
        logOneOfEach();
        auto lines = linesOf(cap.finish());
        CPPUNIT_ASSERT_EQUAL(size_t(5), lines.size());
        for (const auto& l : lines) CPPUNIT_ASSERT_MESSAGE(l, !l.empty() && l[0] >= '0' && l[0] <= '9');
    }

    // JOURNAL_STREAM is inherited: when fd 2 was redirected elsewhere it does not count.
    void testJournalStreamOfAnotherFdNoPrefix() {
        char path[] = "/tmp/mtpolicyd-testlog-XXXXXX";
        int other = ::mkstemp(path);
        CPPUNIT_ASSERT(other >= 0);
        ::unlink(path);
        std::string otherDevIno = devIno(other);
        ::close(other);
        CapturedStderr cap;
        CPPUNIT_ASSERT(cap.ok());
        ::setenv("JOURNAL_STREAM", otherDevIno.c_str(), 1);
        mtp::log::toStderr("unit-tests");
        MTP_LOG(mtp::log::Err, "an error");
        auto lines = linesOf(cap.finish());
        CPPUNIT_ASSERT_EQUAL(size_t(1), lines.size());
        CPPUNIT_ASSERT_MESSAGE(lines[0], lines[0][0] != '<');
    }

    void testMalformedJournalStreamNoPrefix() {
        CapturedStderr cap;
        CPPUNIT_ASSERT(cap.ok());
        ::setenv("JOURNAL_STREAM", (cap.pipeDevIno() + "x").c_str(), 1);
        mtp::log::toStderr("unit-tests");
        MTP_LOG(mtp::log::Err, "an error");
        auto lines = linesOf(cap.finish());
        CPPUNIT_ASSERT_EQUAL(size_t(1), lines.size());
        CPPUNIT_ASSERT_MESSAGE(lines[0], lines[0][0] != '<');
    }

    // A log_file is never the journal, even when fd 2 is.
    void testLogFileNeverPrefixed() {
        char path[] = "/tmp/mtpolicyd-testlog-XXXXXX";
        int fd = ::mkstemp(path);
        CPPUNIT_ASSERT(fd >= 0);
        ::close(fd);
        std::string text;
        {
            CapturedStderr cap;
            CPPUNIT_ASSERT(cap.ok());
            ::setenv("JOURNAL_STREAM", cap.pipeDevIno().c_str(), 1);
            mtp::log::toFile(path, "unit-tests");
            MTP_LOG(mtp::log::Err, "to the file");
            CPPUNIT_ASSERT_EQUAL(std::string(), cap.finish());  // restores stderr logging
        }
        std::FILE* f = std::fopen(path, "r");
        CPPUNIT_ASSERT(f != nullptr);
        char buf[512];
        while (std::fgets(buf, sizeof buf, f)) text += buf;
        std::fclose(f);
        ::unlink(path);
        CPPUNIT_ASSERT_MESSAGE(text, text.find(": error: to the file") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(text, !text.empty() && text[0] != '<');
    }
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestLog);
