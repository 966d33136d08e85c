// makeSqlConnection: picks the driver for a parsed DSN. Creating a connection does no I/O; the
// driver connects on its first call (in the worker, after fork).
#include "mtpolicyd/sql/SqlConnection.h"

#include "Drivers.h"

#include <pthread.h>

#include <atomic>

namespace mtp {

namespace sqldetail {

namespace {
std::atomic<unsigned> g_generation{1};
const int g_atforkRegistered = pthread_atfork(nullptr, nullptr, [] { g_generation.fetch_add(1); });
}  // namespace

unsigned processGeneration() {
    (void)g_atforkRegistered;
    return g_generation.load(std::memory_order_relaxed);
}

std::string scrub(std::string text, const std::string& secret) {
    if (secret.empty()) return text;
    size_t pos = 0;
    while ((pos = text.find(secret, pos)) != std::string::npos) {
        text.replace(pos, secret.size(), "***");
        pos += 3;
    }
    return text;
}

}  // namespace sqldetail

uint64_t SqlConnection::executeTransaction(const std::vector<SqlStatement>& statements) {
    uint64_t affected = 0;
    begin();
    try {
        for (const auto& s : statements) affected += execute(s.sql, s.params).affected;
        commit();
    } catch (...) {
        rollback();
        throw;
    }
    return affected;
}

std::unique_ptr<SqlConnection> makeSqlConnection(const SqlSettings& settings) {
    switch (settings.dsn.driver) {
        case Dsn::Driver::Mysql:
            return sqldetail::makeMysqlConnection(settings);
        case Dsn::Driver::Sqlite:
            return sqldetail::makeSqliteConnection(settings);
    }
    throw DbError("database '" + settings.name + "': unknown driver");
}

}  // namespace mtp
