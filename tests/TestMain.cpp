// Test runner shared by the unit and integration test programs: runs every registered CppUnit
// suite (or those named on the command line), prints each failure, and ends with the line
// "<program>: N passed, N failed". Exit status 0 only when nothing failed.
#include <cppunit/BriefTestProgressListener.h>
#include <cppunit/CompilerOutputter.h>
#include <cppunit/TestFailure.h>
#include <cppunit/TestListener.h>
#include <cppunit/TestResult.h>
#include <cppunit/TestResultCollector.h>
#include <cppunit/TestRunner.h>
#include <cppunit/extensions/TestFactoryRegistry.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>
#include <string>

namespace {

// Counts tests (not assertions) and prints one line per test as it ends.
class CountingListener : public CppUnit::TestListener {
public:
    void startTest(CppUnit::Test*) override { failedCurrent_ = false; }
    void addFailure(const CppUnit::TestFailure&) override { failedCurrent_ = true; }
    void endTest(CppUnit::Test* test) override {
        if (failedCurrent_) {
            ++failed;
            std::cout << "FAIL " << test->getName() << std::endl;
        } else {
            ++passed;
            if (verbose) std::cout << "ok   " << test->getName() << std::endl;
        }
    }
    int passed = 0, failed = 0;
    bool verbose = false;

private:
    bool failedCurrent_ = false;
};

}  // namespace

int main(int argc, char** argv) {
    std::string prog = argv[0];
    auto slash = prog.rfind('/');
    if (slash != std::string::npos) prog = prog.substr(slash + 1);

    CppUnit::TestResult controller;
    CppUnit::TestResultCollector collector;
    CountingListener counter;
    counter.verbose = std::getenv("TEST_VERBOSE") != nullptr;
    controller.addListener(&collector);
    controller.addListener(&counter);

    CppUnit::TestRunner runner;
    CppUnit::Test* all = CppUnit::TestFactoryRegistry::getRegistry().makeTest();
    if (argc > 1) {
        for (int i = 1; i < argc; ++i) runner.addTest(all->findTest(argv[i]));
    } else {
        runner.addTest(all);
    }
    runner.run(controller);

    CppUnit::CompilerOutputter out(&collector, std::cerr);
    out.write();
    std::cout << prog << ": " << counter.passed << " passed, " << counter.failed << " failed" << std::endl;
    return counter.failed == 0 ? 0 : 1;
}
