// makeSqlConnection: picks the driver for a parsed DSN. Creating a connection does no I/O; the
// driver connects on its first call (in the worker, after fork).
#include "mtpolicyd/sql/SqlConnection.h"

#include "Drivers.h"

namespace mtp {

namespace sqldetail {

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
