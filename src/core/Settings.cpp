// The one reader that validates configuration blocks against declared settings.
#include "mtpolicyd/core/Settings.h"

#include <algorithm>

#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {

const char* settingTypeName(SettingType t) {
    switch (t) {
        case SettingType::String: return "string";
        case SettingType::Integer: return "integer";
        case SettingType::Number: return "number";
        case SettingType::Boolean: return "boolean";
        case SettingType::List: return "list";
    }
    return "?";
}

SettingSpec optional(const std::string& name, SettingType type, const std::string& help) {
    SettingSpec s;
    s.name = name;
    s.type = type;
    s.help = help;
    return s;
}

SettingSpec withDefault(const std::string& name, SettingType type, const std::string& def,
                        const std::string& help) {
    SettingSpec s = optional(name, type, help);
    s.def = def;
    s.hasDefault = true;
    return s;
}

SettingSpec required(const std::string& name, SettingType type, const std::string& help) {
    SettingSpec s = optional(name, type, help);
    s.required = true;
    return s;
}

SettingSpec ranged(SettingSpec s, long long min, long long max) {
    s.min = min;
    s.max = max;
    return s;
}

SettingSpec overridable(SettingSpec s) {
    s.uc = true;
    return s;
}

SettingSpec secret(SettingSpec s) {
    s.secret = true;
    return s;
}

bool parseBoolean(const std::string& text, bool& out) {
    std::string t = toLower(trim(text));
    if (t == "1" || t == "true" || t == "on" || t == "yes") {
        out = true;
        return true;
    }
    if (t == "0" || t == "false" || t == "off" || t == "no" || t.empty()) {
        out = false;
        return true;
    }
    return false;
}

namespace {

const SettingSpec* lookupSpec(const std::vector<const SettingTable*>& tables, const std::string& key,
                              bool& isUc) {
    isUc = false;
    for (const auto* t : tables)
        for (const auto& s : *t)
            if (s.name == key) return &s;
    if (startsWith(key, "uc_")) {
        std::string base = key.substr(3);
        for (const auto* t : tables)
            for (const auto& s : *t)
                if (s.name == base && s.uc) {
                    isUc = true;
                    return &s;
                }
    }
    return nullptr;
}

// Converts one scalar node to the canonical text of `type`, or throws.
std::string canonical(const ConfNode& n, const SettingSpec& spec, const std::string& context) {
    auto fail = [&](const std::string& why) {
        throw ConfigError(n.where() + ": " + context + ": key '" + n.name + "': " + why);
    };
    if (n.kind != ConfNode::Kind::Scalar) {
        if (spec.type == SettingType::List && n.kind == ConfNode::Kind::List) return "";
        fail(std::string("expected a ") + settingTypeName(spec.type) + ", got " + n.kindName());
    }
    switch (spec.type) {
        case SettingType::String:
        case SettingType::List:
            return n.value;
        case SettingType::Integer: {
            long long v;
            if (!parseInteger(n.value, v)) fail("expected an integer, got \"" + n.value + "\"");
            if (spec.min < spec.max && (v < spec.min || v > spec.max))
                fail("value " + std::to_string(v) + " is out of range " + std::to_string(spec.min) +
                     ".." + std::to_string(spec.max));
            return std::to_string(v);
        }
        case SettingType::Number: {
            double v;
            if (!parseNumber(n.value, v)) fail("expected a number, got \"" + n.value + "\"");
            return formatNumber(v);
        }
        case SettingType::Boolean: {
            bool b;
            if (!parseBoolean(n.value, b))
                fail("expected a boolean (true/false, 1/0, on/off), got \"" + n.value + "\"");
            return b ? "1" : "0";
        }
    }
    return n.value;
}

}  // namespace

Options Options::apply(const ConfNode& block, const std::vector<const SettingTable*>& tables,
                       const std::string& context, const std::vector<std::string>& skip) {
    Options o;
    o.tables_ = tables;
    o.where_ = block.where();
    o.context_ = context;
    if (block.kind != ConfNode::Kind::Group)
        throw ConfigError(block.where() + ": " + context + ": expected a group { ... }, got " +
                          block.kindName());
    for (const auto& n : block.children) {
        if (std::find(skip.begin(), skip.end(), n.name) != skip.end()) continue;
        bool isUc = false;
        const SettingSpec* spec = lookupSpec(tables, n.name, isUc);
        if (!spec) throw ConfigError(n.where() + ": " + context + ": unknown key '" + n.name + "'");
        Value v;
        v.set = true;
        v.where = n.where();
        if (isUc) {
            if (n.kind != ConfNode::Kind::Scalar)
                throw ConfigError(n.where() + ": " + context + ": key '" + n.name +
                                  "': expected the name of a session variable");
            v.text = n.value;
        } else if (spec->type == SettingType::List) {
            if (n.kind == ConfNode::Kind::List) {
                for (const auto& e : n.children) {
                    if (e.kind != ConfNode::Kind::Scalar)
                        throw ConfigError(e.where() + ": " + context + ": key '" + n.name +
                                          "': list elements must be strings");
                    v.list.push_back(e.value);
                }
            } else {
                v.text = canonical(n, *spec, context);
                v.list = splitList(v.text);
            }
            std::string joined;
            for (const auto& e : v.list) joined += (joined.empty() ? "" : ",") + e;
            v.text = joined;
        } else {
            v.text = canonical(n, *spec, context);
        }
        o.values_[n.name] = std::move(v);
    }
    for (const auto* t : tables)
        for (const auto& s : *t) {
            if (o.values_.count(s.name)) continue;
            if (s.required)
                throw ConfigError(block.where() + ": " + context + ": missing required key '" + s.name + "'");
            if (s.hasDefault) {
                Value v;
                v.text = s.def;
                if (s.type == SettingType::List) v.list = splitList(s.def);
                // A default is located at its block, so that an error about it (a default
                // `db` naming no connection) still names file and line.
                v.where = block.where();
                o.values_[s.name] = std::move(v);
            }
        }
    return o;
}

const Options::Value* Options::find(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? nullptr : &it->second;
}

bool Options::has(const std::string& name) const { return find(name) != nullptr; }

bool Options::isSet(const std::string& name) const {
    const Value* v = find(name);
    return v && v->set;
}

const std::string& Options::str(const std::string& name) const {
    static const std::string empty;
    const Value* v = find(name);
    return v ? v->text : empty;
}

long long Options::integer(const std::string& name) const {
    long long v = 0;
    parseInteger(str(name), v);
    return v;
}

double Options::number(const std::string& name) const {
    double v = 0;
    parseNumber(str(name), v);
    return v;
}

bool Options::boolean(const std::string& name) const {
    bool b = false;
    parseBoolean(str(name), b);
    return b;
}

const std::vector<std::string>& Options::list(const std::string& name) const {
    static const std::vector<std::string> empty;
    const Value* v = find(name);
    return v ? v->list : empty;
}

const std::string& Options::ucKey(const std::string& name) const { return str("uc_" + name); }

const std::string& Options::whereOf(const std::string& name) const {
    const Value* v = find(name);
    return v ? v->where : where_;
}

void Options::setForTest(const std::string& name, const std::string& value) {
    Value v;
    v.text = value;
    v.list = splitList(value);
    v.set = true;
    v.where = "test";
    values_[name] = std::move(v);
}

void Options::dump(std::ostream& os, int indent) const {
    std::string pad(indent, ' ');
    for (const auto* t : tables_)
        for (const auto& s : *t) {
            const Value* v = find(s.name);
            if (!v) {
                os << pad << "# " << s.name << " is not set\n";
            } else if (s.secret) {
                os << pad << s.name << " = \"********\";\n";
            } else {
                os << pad << s.name << " = ";
                switch (s.type) {
                    case SettingType::Integer: {
                        // libconfig needs the L suffix beyond 32 bits, or it truncates.
                        long long n = 0;
                        parseInteger(v->text, n);
                        os << v->text << (n > 2147483647LL || n < -2147483648LL ? "L" : "");
                        break;
                    }
                    case SettingType::Number:
                        os << v->text;
                        break;
                    case SettingType::Boolean:
                        os << (v->text == "1" ? "true" : "false");
                        break;
                    case SettingType::List: {
                        os << "[ ";
                        for (size_t i = 0; i < v->list.size(); ++i)
                            os << (i ? ", " : "") << quoteString(v->list[i]);
                        os << " ]";
                        break;
                    }
                    case SettingType::String:
                        os << quoteString(v->text);
                        break;
                }
                os << ";\n";
            }
            if (s.uc) {
                const Value* u = find("uc_" + s.name);
                if (u) os << pad << "uc_" << s.name << " = " << quoteString(u->text) << ";\n";
            }
        }
}

}  // namespace mtp
