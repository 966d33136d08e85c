// Shared by Accounting and Quota: the acct_<field> tables of mtpolicyd's accounting how-to.
#pragma once

#include <cstddef>
#include <string>

#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace plugins {

// The metrics (columns) Quota can check.
inline bool isAccountingMetric(const std::string& m) {
    return m == "count" || m == "count_rcpt" || m == "size" || m == "size_rcpt";
}

// Bytes of the `key` column (VARCHAR(255)). Longer values are stored under fitKey(): their
// first 200 bytes, "~" and a 128-bit hash of the whole value, so that MariaDB in strict mode
// does not refuse the row ("Data too long", the message deferred on every retry) and SQLite
// stores the same key as MariaDB. Shorter values are stored as they are, as mtpolicyd did.
constexpr size_t kAccountingKeyBytes = 255;

// The `key` under which Accounting counts `value` and Quota looks it up: both must use this.
inline std::string accountingKey(const std::string& value) {
    return fitKey(value, kAccountingKeyBytes);
}

// prefix + field, checked to be a safe SQL identifier before it goes into any statement.
inline std::string accountingTable(const std::string& prefix, const std::string& field) {
    std::string t = prefix + field;
    if (!isSafeIdentifier(t))
        throw DbError("table name '" + t + "' (table_prefix + field) must match [A-Za-z0-9_]+");
    return t;
}

}  // namespace plugins
}  // namespace mtp
