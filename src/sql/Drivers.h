// Private to src/sql: the driver factories behind makeSqlConnection, and small helpers the
// drivers share. Not part of the library's public interface.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "mtpolicyd/sql/SqlConnection.h"

namespace mtp {
namespace sqldetail {

// A MySQL/MariaDB connection. `pingAfterIdle`: a handle unused for longer than this is pinged
// before it is reused (tests shorten it; the daemon uses the default). `compound`: false runs
// executeTransaction statement by statement even on MariaDB, as on MySQL (for tests).
std::unique_ptr<SqlConnection> makeMysqlConnection(
    const SqlSettings& settings,
    std::chrono::milliseconds pingAfterIdle = std::chrono::seconds(30), bool compound = true);

std::unique_ptr<SqlConnection> makeSqliteConnection(const SqlSettings& settings);

// A number that changes in the child at every fork (pthread_atfork): a handle opened under
// another number was inherited from the parent. Cheaper than getpid(), a system call, on every
// statement.
unsigned processGeneration();

// Replaces every occurrence of `secret` in `text` with "***" (belt and braces: no server
// message is known to echo a password, but none may ever reach a log).
std::string scrub(std::string text, const std::string& secret);

}  // namespace sqldetail
}  // namespace mtp
