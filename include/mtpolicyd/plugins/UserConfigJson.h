// The JSON half of the SqlUserConfig plugin: turning a user-config object (the first column of
// the row the plugin's query returned) into session variables. A free function so that it can
// be tested and fuzzed without a database.
#pragma once

#include <stdexcept>
#include <string>

#include "mtpolicyd/core/Session.h"

namespace mtp {
namespace plugins {

// Thrown by applyUserConfigJson when the text is not a JSON object.
class UserConfigJsonError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Stores the members of the JSON object `json` as variables of `s`: strings as they are,
// numbers formatted like mtpolicyd (100000, 2.5), booleans as "1"/"0", arrays and objects as
// their compact JSON text; a null member erases the variable. Throws UserConfigJsonError (and
// leaves `s` untouched) when `json` is not a JSON object (invalid JSON, an array, a scalar,
// empty text).
void applyUserConfigJson(const std::string& json, Session& s);

}  // namespace plugins
}  // namespace mtp
