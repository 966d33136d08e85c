// mtpolicyd: command-line parsing and hand-off to the master. Nothing else lives here.
#include <getopt.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "config.h"
#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/server/Master.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"
#include "mtpolicyd/util/Strings.h"

namespace {

const char* kUsage =
    "Usage: mtpolicyd [options]\n"
    "  -c, --config FILE     configuration file (default " MTPOLICYD_CONFIG_FILE "),\n"
    "                        libconfig or mtpolicyd 2.x format\n"
    "  -f, --foreground      stay in the foreground, log to stderr (unless log_file is set)\n"
    "  -l, --loglevel LEVEL  log level 0-4, overrides log_level\n"
    "  -t, --test            check the configuration and exit (0: valid, 1: invalid)\n"
    "  -d, --dump-config     print the effective configuration, defaults included, and exit\n"
    "      --cron TASKS      run the periodic tasks (hourly,daily,weekly,monthly) and exit\n"
    "      --convert-config FILE\n"
    "                        print a mtpolicyd 2.x configuration file in the native format\n"
    "  -h, --help            this help\n"
    "  -V, --version         print the version\n";

enum { OPT_CRON = 1000, OPT_CONVERT };

}  // namespace

int main(int argc, char** argv) {
    mtp::RunOptions run;
    run.configFile = MTPOLICYD_CONFIG_FILE;
    bool test = false, dump = false;
    std::string cronTasks, convertFile;
    bool cron = false, convert = false;

    static const option longOpts[] = {
        {"config", required_argument, nullptr, 'c'},   {"foreground", no_argument, nullptr, 'f'},
        {"loglevel", required_argument, nullptr, 'l'}, {"test", no_argument, nullptr, 't'},
        {"dump-config", no_argument, nullptr, 'd'},    {"dump_config", no_argument, nullptr, 'd'},
        {"cron", required_argument, nullptr, OPT_CRON}, {"help", no_argument, nullptr, 'h'},
        {"convert-config", required_argument, nullptr, OPT_CONVERT},
        {"version", no_argument, nullptr, 'V'},        {nullptr, 0, nullptr, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:fl:tdhV", longOpts, nullptr)) != -1) {
        switch (opt) {
            case 'c': run.configFile = optarg; break;
            case 'f': run.foreground = true; break;
            case 'l': {
                long long lvl;
                if (!mtp::parseInteger(optarg, lvl) || lvl < 0 || lvl > 4) {
                    std::cerr << "mtpolicyd: -l takes a level from 0 to 4\n";
                    return 64;
                }
                run.logLevel = static_cast<int>(lvl);
                break;
            }
            case 't': test = true; break;
            case 'd': dump = true; break;
            case OPT_CRON: cron = true; cronTasks = optarg; break;
            case OPT_CONVERT: convert = true; convertFile = optarg; break;
            case 'h': std::cout << kUsage; return 0;
            case 'V': std::cout << "mtpolicyd " << PACKAGE_VERSION << "\n"; return 0;
            default: std::cerr << kUsage; return 64;
        }
    }
    if (optind < argc) {
        std::cerr << "mtpolicyd: unexpected argument '" << argv[optind] << "'\n" << kUsage;
        return 64;
    }

    if (convert) {
        // The native text on stdout; what was accepted but is unused also on stderr.
        try {
            std::vector<std::string> warnings;
            std::string text = mtp::convertLegacyConfig(convertFile, &warnings);
            for (const auto& w : warnings) std::cerr << "mtpolicyd: warning: " << w << "\n";
            std::cout << text;
            return 0;
        } catch (const std::exception& e) {
            std::cerr << "mtpolicyd: " << e.what() << "\n";
            return 1;
        }
    }

    // The daemon changes to / when it goes to the background; reloads must find the file.
    if (!run.configFile.empty() && run.configFile[0] != '/') {
        char cwd[4096];
        if (getcwd(cwd, sizeof cwd)) run.configFile = std::string(cwd) + "/" + run.configFile;
    }
    std::unique_ptr<mtp::Config> cfg;
    try {
        cfg = mtp::Config::load(run.configFile);
    } catch (const std::exception& e) {
        std::cerr << "mtpolicyd: " << e.what() << "\n";
        return 1;
    }
    if (test) {
        for (const auto& w : cfg->warnings()) std::cerr << "mtpolicyd: warning: " << w << "\n";
        std::cout << "mtpolicyd: configuration " << run.configFile << " is valid (" << cfg->vhosts.size()
                  << " virtual hosts)\n";
        return 0;
    }
    if (dump) {
        cfg->dump(std::cout);
        return 0;
    }
    try {
        if (cron) {
            run.foreground = true;  // cron output goes to stderr (and thus to cron's mail)
            mtp::setupLogging(*cfg, run);
            cfg->startPlugins();
            cfg->cron(mtp::splitList(cronTasks));
            return 0;
        }
        mtp::setupLogging(*cfg, run);
        for (const auto& w : cfg->warnings()) MTP_LOG(mtp::log::Warning, "%s", w.c_str());
        return mtp::runMaster(std::move(cfg), run);
    } catch (const std::exception& e) {
        MTP_LOG(mtp::log::Err, "fatal: %s", e.what());
        std::cerr << "mtpolicyd: " << e.what() << "\n";
        return 1;
    }
}
