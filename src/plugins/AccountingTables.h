// Shared by Accounting and Quota: the acct_<field> tables of mtpolicyd's accounting how-to.
#pragma once

#include <string>

#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace plugins {

// The metrics (columns) Quota can check.
inline bool isAccountingMetric(const std::string& m) {
    return m == "count" || m == "count_rcpt" || m == "size" || m == "size_rcpt";
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
