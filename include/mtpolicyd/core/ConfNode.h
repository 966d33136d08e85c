// A format-neutral tree of configuration values, each with the file and line it came from.
// The libconfig reader (and later the Config::General reader) produce it; the schema in
// Settings.h validates it. Keeping the formats apart from validation means both formats give
// the same errors and the same defaults.
#pragma once

#include <string>
#include <vector>

namespace mtp {

struct ConfNode {
    enum class Kind { Scalar, List, Group };
    enum class ScalarType { String, Integer, Float, Boolean };

    Kind kind = Kind::Group;
    ScalarType scalarType = ScalarType::String;
    std::string name;   // empty for list elements
    std::string value;  // scalar text; booleans are "true"/"false"
    std::vector<ConfNode> children;
    std::string file;
    int line = 0;

    const ConfNode* child(const std::string& key) const;
    // "file:line" for error messages.
    std::string where() const;
    const char* kindName() const;
};

// Reads a libconfig file (with @include support). Throws ConfigError naming file and line.
ConfNode readLibconfigFile(const std::string& path);
// Same for a string (tests); `name` stands for the file name in messages.
ConfNode readLibconfigString(const std::string& text, const std::string& name = "<string>");

}  // namespace mtp
