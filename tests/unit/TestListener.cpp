// Unit tests for listening sockets: mtp::ListenSpec::parse edge cases and mtp::bindListeners /
// closeListener on loopback TCP (a port found free just before) and on unix sockets in a private
// temp directory: permissions 0666, removal on close, refusing to replace a regular file or a
// live socket, replacing a stale one, nothing left open after a failure, and fd reuse on reload.
#include <arpa/inet.h>
#include <cppunit/extensions/HelperMacros.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "mtpolicyd/server/Listener.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"

using mtp::Listener;
using mtp::ListenSpec;

namespace {

// A port on 127.0.0.1 that nothing listens on right now.
int freePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    CPPUNIT_ASSERT(fd >= 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = 0;
    CPPUNIT_ASSERT(::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t len = sizeof sin;
    CPPUNIT_ASSERT(::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) == 0);
    ::close(fd);
    return ntohs(sin.sin_port);
}

// A listening socket on 127.0.0.1:port, held by the test (to make the port busy).
int listenOn(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    CPPUNIT_ASSERT(fd >= 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(static_cast<uint16_t>(port));
    CPPUNIT_ASSERT(::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    CPPUNIT_ASSERT(::listen(fd, 5) == 0);
    return fd;
}

bool canBind(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(static_cast<uint16_t>(port));
    bool ok =
        ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0 && ::listen(fd, 1) == 0;
    ::close(fd);
    return ok;
}

bool connectTcp(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0;
    ::close(fd);
    return ok;
}

sockaddr_un unixAddr(const std::string& path) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
    return sun;
}

bool connectUnix(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sun = unixAddr(path);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0;
    ::close(fd);
    return ok;
}

// A unix socket bound at `path`; listening when `listen` (then the caller must close it),
// otherwise closed at once, which leaves a stale socket file behind.
int bindUnixRaw(const std::string& path, bool listen) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sun = unixAddr(path);
    CPPUNIT_ASSERT(::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
    if (listen) {
        CPPUNIT_ASSERT(::listen(fd, 5) == 0);
        return fd;
    }
    ::close(fd);
    return -1;
}

bool exists(const std::string& path, struct stat* out = nullptr) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return false;
    if (out) *out = st;
    return true;
}

ListenSpec spec(const std::string& text) {
    ListenSpec s;
    std::string err = ListenSpec::parse(text, "127.0.0.1", s);
    CPPUNIT_ASSERT_EQUAL_MESSAGE(text, std::string(""), err);
    return s;
}

bool isOpen(int fd) { return fd >= 0 && fcntl(fd, F_GETFD) != -1; }

}  // namespace

class TestListener : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestListener);
    CPPUNIT_TEST(testParseTrimsWhiteSpace);
    CPPUNIT_TEST(testParseHostForms);
    CPPUNIT_TEST(testParseUnixForms);
    CPPUNIT_TEST(testParseErrors);
    CPPUNIT_TEST(testBindTcpLoopback);
    CPPUNIT_TEST(testBindTcpPortInUse);
    CPPUNIT_TEST(testBindFailureLeavesNothingOpen);
    CPPUNIT_TEST(testBindUnixSocket);
    CPPUNIT_TEST(testCloseWithoutUnlinkKeepsFile);
    CPPUNIT_TEST(testBindUnixOverRegularFileFails);
    CPPUNIT_TEST(testBindUnixReplacesStaleSocket);
    CPPUNIT_TEST(testBindUnixRefusesLiveSocket);
    CPPUNIT_TEST(testReuseKeepsFd);
    CPPUNIT_TEST(testReuseBySameAddressOtherSpelling);
    CPPUNIT_TEST(testReuseGivenBackOnFailure);
    CPPUNIT_TEST_SUITE_END();

  public:
    void setUp() override {
        savedLevel_ = mtp::log::g_level;
        mtp::log::g_level = -1;  // "Binding to ..." notices
        char tmpl[] = "/tmp/mtpolicyd-unit-sock-XXXXXX";
        const char* d = mkdtemp(tmpl);
        CPPUNIT_ASSERT(d != nullptr);
        dir_ = d;
    }

    void tearDown() override {
        mtp::log::g_level = savedLevel_;
        for (const char* n :
             {"policy.sock", "stale.sock", "live.sock", "file", "a.sock", "keep.sock"})
            ::unlink((dir_ + "/" + n).c_str());
        ::rmdir(dir_.c_str());
    }

    void testParseTrimsWhiteSpace() {
        ListenSpec s;
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("  127.0.0.1:12345 \t", "x", s));
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), s.host);
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), s.port);
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse(" 12345 ", "127.0.0.1", s));
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), s.port);
    }

    void testParseHostForms() {
        ListenSpec s;
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("*:12345", "x", s));
        CPPUNIT_ASSERT_EQUAL(std::string("*"), s.host);
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("localhost:12345", "x", s));
        CPPUNIT_ASSERT_EQUAL(std::string("localhost"), s.host);
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("[2001:db8::1]:25", "x", s));
        CPPUNIT_ASSERT_EQUAL(std::string("2001:db8::1"), s.host);
        CPPUNIT_ASSERT_EQUAL(std::string("25"), s.port);
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("127.0.0.1:65535", "x", s));
        CPPUNIT_ASSERT_EQUAL(std::string("65535"), s.port);
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("127.0.0.1:1", "x", s));
        // The text is kept as written (for logs and reload matching).
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse("12345", "::1", s));
        CPPUNIT_ASSERT_EQUAL(std::string("12345"), s.text);
        CPPUNIT_ASSERT_EQUAL(std::string("::1"), s.host);
    }

    void testParseUnixForms() {
        ListenSpec s;
        CPPUNIT_ASSERT_EQUAL(std::string(""),
                             ListenSpec::parse("/var/spool/postfix/private/policy|unix", "x", s));
        CPPUNIT_ASSERT(s.kind == ListenSpec::Kind::Unix);
        CPPUNIT_ASSERT_EQUAL(std::string("/var/spool/postfix/private/policy"), s.path);
        CPPUNIT_ASSERT_EQUAL(std::string("/var/spool/postfix/private/policy"), s.key());
        std::string longest = "/" + std::string(106, 'p');  // 107 bytes + NUL fits sun_path
        CPPUNIT_ASSERT_EQUAL(std::string(""), ListenSpec::parse(longest, "x", s));
    }

    void testParseErrors() {
        ListenSpec s;
        CPPUNIT_ASSERT(!ListenSpec::parse("::1:12345", "x", s).empty());  // v6 needs brackets
        CPPUNIT_ASSERT(!ListenSpec::parse("[::1]12345", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("[::1]:", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("[::1", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse(":12345", "x", s).empty());  // empty host
        CPPUNIT_ASSERT(!ListenSpec::parse("12345", "", s).empty());    // no default host
        CPPUNIT_ASSERT(!ListenSpec::parse("127.0.0.1:0", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("127.0.0.1:99999999999", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("127.0.0.1:12 345", "x", s).empty());
        CPPUNIT_ASSERT(!ListenSpec::parse("policy.sock|unix", "x", s).empty());  // relative path
        CPPUNIT_ASSERT(!ListenSpec::parse("|unix", "x", s).empty());
        CPPUNIT_ASSERT(
            !ListenSpec::parse("/" + std::string(107, 'p'), "x", s).empty());  // too long
        CPPUNIT_ASSERT(!ListenSpec::parse("   ", "x", s).empty());
        // The message quotes what was wrong.
        std::string e = ListenSpec::parse("127.0.0.1:http", "x", s);
        CPPUNIT_ASSERT_MESSAGE(e, e.find("127.0.0.1:http") != std::string::npos);
    }

    void testBindTcpLoopback() {
        int port = freePort();
        std::vector<Listener> reuse;
        std::vector<Listener> ls =
            mtp::bindListeners({spec("127.0.0.1:" + std::to_string(port))}, reuse);
        CPPUNIT_ASSERT_EQUAL(size_t(1), ls.size());
        CPPUNIT_ASSERT(isOpen(ls[0].fd));
        CPPUNIT_ASSERT_EQUAL("127.0.0.1:" + std::to_string(port), ls[0].address);
        CPPUNIT_ASSERT_EQUAL(std::to_string(port), ls[0].key());
        CPPUNIT_ASSERT(connectTcp(port));
        // Close-on-exec: workers exec nothing, but helpers must not inherit the socket.
        CPPUNIT_ASSERT(fcntl(ls[0].fd, F_GETFD) & FD_CLOEXEC);
        int fd = ls[0].fd;
        mtp::closeListener(ls[0], true);
        CPPUNIT_ASSERT_EQUAL(-1, ls[0].fd);
        CPPUNIT_ASSERT(!isOpen(fd));
        CPPUNIT_ASSERT(!connectTcp(port));
    }

    void testBindTcpPortInUse() {
        int port = freePort();
        int busy = listenOn(port);
        std::vector<Listener> reuse;
        std::string msg;
        try {
            mtp::bindListeners({spec("127.0.0.1:" + std::to_string(port))}, reuse);
        } catch (const std::exception& e) {
            msg = e.what();
        }
        ::close(busy);
        CPPUNIT_ASSERT_MESSAGE("binding a busy port must fail", !msg.empty());
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(std::to_string(port)) != std::string::npos);
    }

    void testBindFailureLeavesNothingOpen() {
        int good = freePort();
        int bad = freePort();
        while (bad == good) bad = freePort();
        int busy = listenOn(bad);
        std::vector<Listener> reuse;
        bool threw = false;
        try {
            mtp::bindListeners({spec("127.0.0.1:" + std::to_string(good)), spec(dir_ + "/a.sock"),
                                spec("127.0.0.1:" + std::to_string(bad))},
                               reuse);
        } catch (const std::exception&) {
            threw = true;
        }
        ::close(busy);
        CPPUNIT_ASSERT(threw);
        CPPUNIT_ASSERT_MESSAGE("the first port must have been released", canBind(good));
        CPPUNIT_ASSERT_MESSAGE("the unix socket must have been removed", !exists(dir_ + "/a.sock"));
    }

    void testBindUnixSocket() {
        std::string path = dir_ + "/policy.sock";
        mode_t old = ::umask(077);  // the mode must not depend on the umask
        std::vector<Listener> reuse;
        std::vector<Listener> ls;
        try {
            ls = mtp::bindListeners({spec(path)}, reuse);
        } catch (...) {
            ::umask(old);
            throw;
        }
        ::umask(old);
        CPPUNIT_ASSERT_EQUAL(size_t(1), ls.size());
        CPPUNIT_ASSERT_EQUAL(path, ls[0].address);
        CPPUNIT_ASSERT_EQUAL(path, ls[0].key());
        struct stat st {};
        CPPUNIT_ASSERT(exists(path, &st));
        CPPUNIT_ASSERT(S_ISSOCK(st.st_mode));
        CPPUNIT_ASSERT_EQUAL(0666, static_cast<int>(st.st_mode & 07777));
        CPPUNIT_ASSERT(connectUnix(path));
        mtp::closeListener(ls[0], true);
        CPPUNIT_ASSERT(!exists(path));
        // Closing twice is harmless.
        mtp::closeListener(ls[0], true);
    }

    void testCloseWithoutUnlinkKeepsFile() {
        // A reload hands the fd to the new master; the file must stay.
        std::string path = dir_ + "/keep.sock";
        std::vector<Listener> reuse;
        std::vector<Listener> ls = mtp::bindListeners({spec(path)}, reuse);
        mtp::closeListener(ls[0], false);
        CPPUNIT_ASSERT(exists(path));
    }

    void testBindUnixOverRegularFileFails() {
        std::string path = dir_ + "/file";
        std::ofstream(path) << "important data\n";
        std::vector<Listener> reuse;
        std::string msg;
        try {
            mtp::bindListeners({spec(path + "|unix")}, reuse);
        } catch (const std::exception& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE("binding over a regular file must fail", !msg.empty());
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(path) != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find("not a socket") != std::string::npos);
        struct stat st {};
        CPPUNIT_ASSERT(exists(path, &st));
        CPPUNIT_ASSERT(S_ISREG(st.st_mode));
        CPPUNIT_ASSERT_EQUAL(off_t(15), st.st_size);
    }

    void testBindUnixReplacesStaleSocket() {
        std::string path = dir_ + "/stale.sock";
        bindUnixRaw(path, false);  // left behind by a crashed daemon
        CPPUNIT_ASSERT(exists(path));
        CPPUNIT_ASSERT(!connectUnix(path));
        std::vector<Listener> reuse;
        std::vector<Listener> ls = mtp::bindListeners({spec(path)}, reuse);
        CPPUNIT_ASSERT_EQUAL(size_t(1), ls.size());
        CPPUNIT_ASSERT(connectUnix(path));
        mtp::closeListener(ls[0], true);
    }

    void testBindUnixRefusesLiveSocket() {
        std::string path = dir_ + "/live.sock";
        int other = bindUnixRaw(path, true);  // another daemon serving it
        std::vector<Listener> reuse;
        std::string msg;
        try {
            mtp::bindListeners({spec(path)}, reuse);
        } catch (const std::exception& e) {
            msg = e.what();
        }
        CPPUNIT_ASSERT_MESSAGE("a live socket must not be taken over", !msg.empty());
        CPPUNIT_ASSERT_MESSAGE(msg, msg.find(path) != std::string::npos);
        CPPUNIT_ASSERT(connectUnix(path));  // still the other daemon's
        ::close(other);
    }

    void testReuseKeepsFd() {
        int port = freePort();
        std::vector<Listener> none;
        std::vector<Listener> first = mtp::bindListeners(
            {spec("127.0.0.1:" + std::to_string(port)), spec(dir_ + "/policy.sock")}, none);
        CPPUNIT_ASSERT_EQUAL(size_t(2), first.size());
        int tcpFd = first[0].fd, unixFd = first[1].fd;
        // Reload with the same addresses: the sockets are kept, not bound again.
        std::vector<Listener> second = mtp::bindListeners(
            {spec("127.0.0.1:" + std::to_string(port)), spec(dir_ + "/policy.sock")}, first);
        CPPUNIT_ASSERT_EQUAL(size_t(2), second.size());
        CPPUNIT_ASSERT_EQUAL(tcpFd, second[0].fd);
        CPPUNIT_ASSERT_EQUAL(unixFd, second[1].fd);
        CPPUNIT_ASSERT_EQUAL(-1, first[0].fd);
        CPPUNIT_ASSERT_EQUAL(-1, first[1].fd);
        CPPUNIT_ASSERT(connectTcp(port));
        CPPUNIT_ASSERT(connectUnix(dir_ + "/policy.sock"));
        for (auto& l : second) mtp::closeListener(l, true);
    }

    void testReuseBySameAddressOtherSpelling() {
        // "12345" with the default host 127.0.0.1 is the socket "127.0.0.1:12345" already has.
        int port = freePort();
        std::vector<Listener> none;
        std::vector<Listener> first =
            mtp::bindListeners({spec("127.0.0.1:" + std::to_string(port))}, none);
        int fd = first[0].fd;
        std::vector<Listener> second = mtp::bindListeners({spec(std::to_string(port))}, first);
        CPPUNIT_ASSERT_EQUAL(size_t(1), second.size());
        CPPUNIT_ASSERT_EQUAL(fd, second[0].fd);
        CPPUNIT_ASSERT_EQUAL(std::to_string(port), second[0].spec.text);  // the new spelling
        CPPUNIT_ASSERT_EQUAL(-1, first[0].fd);
        mtp::closeListener(second[0], true);
    }

    void testReuseGivenBackOnFailure() {
        // A reload that cannot bind a new address keeps the running sockets intact.
        int port = freePort();
        int bad = freePort();
        while (bad == port) bad = freePort();
        std::vector<Listener> none;
        std::vector<Listener> running =
            mtp::bindListeners({spec("127.0.0.1:" + std::to_string(port))}, none);
        int fd = running[0].fd;
        int busy = listenOn(bad);
        bool threw = false;
        try {
            mtp::bindListeners({spec("127.0.0.1:" + std::to_string(port)),
                                spec("127.0.0.1:" + std::to_string(bad))},
                               running);
        } catch (const std::exception&) {
            threw = true;
        }
        ::close(busy);
        CPPUNIT_ASSERT(threw);
        CPPUNIT_ASSERT_EQUAL(fd, running[0].fd);
        CPPUNIT_ASSERT(isOpen(fd));
        CPPUNIT_ASSERT(connectTcp(port));
        mtp::closeListener(running[0], true);
    }

  private:
    int savedLevel_ = 2;
    std::string dir_;
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestListener);
