// A format-neutral tree of configuration values, each with the file and line it came from.
// The libconfig reader and the reader of mtpolicyd 2.x (Config::General) files produce it;
// the schema in Settings.h validates it. Keeping the formats apart from validation means both
// formats give the same errors and the same defaults.
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

// Reads a configuration file of the Perl mtpolicyd 2.x (Config::General syntax, as mtpolicyd
// parses it: <VirtualHost PORT>, <Plugin NAME>, <Connection NAME>, <SessionCache> blocks,
// <<include FILE>>) into the tree shape of the native format, so that Config::fromTree
// validates it: globals at the top, `connections` (a group of groups), `virtual_hosts` (a
// list of groups with name, port and `plugins`). Every node carries its file and line. Throws
// ConfigError naming file and line for syntax errors, repeated keys or blocks, and what this
// implementation does not support (unknown blocks, plugin modules not implemented). Blocks
// that are accepted but unused (<SessionCache>, Memcached/Redis connections) add a message to
// `warnings` when it is given. Implemented in LegacyConfig.cpp.
ConfNode readLegacyFile(const std::string& path, std::vector<std::string>* warnings = nullptr);
// Same for a string; `name` stands for the file name in messages, and includes are relative to
// its directory.
ConfNode readLegacyString(const std::string& text, const std::string& name = "<string>",
                          std::vector<std::string>* warnings = nullptr);
// True when `text` is in the mtpolicyd 2.x format rather than libconfig: the first line (after
// comments) that only one of the formats can contain decides. A line starting with '<' (a
// block or <<include>>) means mtpolicyd 2.x; a line ending with ';', ',', '{', '(', '[' or
// a closing bracket, or starting with a bracket or @include, means libconfig. Without such a
// line, `key = value` / `key value` lines mean mtpolicyd 2.x; an empty file is libconfig.
bool looksLikeLegacyConfig(const std::string& text);

}  // namespace mtp
