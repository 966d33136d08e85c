// Declared settings and validated option values.
//
// Every configuration key (global, connection, plugin) is declared exactly once, as data, in a
// SettingTable: name, type, default, help. Options::apply() is the one reader that checks a
// ConfNode block against its tables: unknown keys, wrong types and missing required keys become
// ConfigErrors naming file, line and key. The same tables feed --dump-config and the manual.
#pragma once

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "mtpolicyd/core/ConfNode.h"

namespace mtp {

enum class SettingType { String, Integer, Number, Boolean, List };

const char* settingTypeName(SettingType t);

struct SettingSpec {
    std::string name;
    SettingType type = SettingType::String;
    std::string def;        // default value as text; meaningful only when hasDefault
    bool hasDefault = false;
    bool required = false;
    bool uc = false;        // may be overridden per request by uc_<name> (a session variable)
    bool secret = false;    // never printed (passwords)
    std::string help;
    long long min = 0, max = 0;  // inclusive range for integers when min < max
};

using SettingTable = std::vector<SettingSpec>;

// Shorthand constructors that keep the tables readable.
SettingSpec optional(const std::string& name, SettingType type, const std::string& help);
SettingSpec withDefault(const std::string& name, SettingType type, const std::string& def,
                        const std::string& help);
SettingSpec required(const std::string& name, SettingType type, const std::string& help);
SettingSpec ranged(SettingSpec s, long long min, long long max);
SettingSpec overridable(SettingSpec s);  // adds uc_<name>
SettingSpec secret(SettingSpec s);

// The validated values of one block. Values are kept as canonical text (booleans "1"/"0",
// lists comma-joined) plus where they were set.
class Options {
public:
    struct Value {
        std::string text;
        std::vector<std::string> list;
        bool set = false;  // given in the file (as opposed to the default)
        std::string where;
    };

    // Validates `block` (a Group) against `tables`. `context` names the block in messages
    // ("plugin 'QuotaIP'"). Keys in `skip` are left for the caller (e.g. nested "plugins").
    static Options apply(const ConfNode& block, const std::vector<const SettingTable*>& tables,
                         const std::string& context, const std::vector<std::string>& skip = {});

    bool has(const std::string& name) const;  // set in the file or has a default
    bool isSet(const std::string& name) const;  // set in the file
    const std::string& str(const std::string& name) const;
    long long integer(const std::string& name) const;
    double number(const std::string& name) const;
    bool boolean(const std::string& name) const;
    const std::vector<std::string>& list(const std::string& name) const;
    // The session variable named by uc_<name>, or "" when not configured.
    const std::string& ucKey(const std::string& name) const;
    const std::string& where() const { return where_; }
    const std::string& whereOf(const std::string& name) const;

    // Prints `key = value;` lines for every declared setting (defaults included, secrets
    // masked, unset optional keys as comments), indented by `indent` spaces.
    void dump(std::ostream& os, int indent) const;

    // Lets tests and internal code build options without a file.
    void setForTest(const std::string& name, const std::string& value);

private:
    const Value* find(const std::string& name) const;
    std::map<std::string, Value> values_;
    std::vector<const SettingTable*> tables_;
    std::string where_;
    std::string context_;
};

// Boolean parsing shared by every reader: true/false, 1/0, on/off, yes/no.
bool parseBoolean(const std::string& text, bool& out);

}  // namespace mtp
