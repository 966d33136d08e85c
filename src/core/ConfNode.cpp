// ConfNode helpers and the libconfig++ reader that turns a libconfig file into a ConfNode tree.
#include "mtpolicyd/core/ConfNode.h"

#include <libconfig.h++>

#include <cstdio>
#include <sstream>

#include "mtpolicyd/util/Errors.h"

namespace mtp {

const ConfNode* ConfNode::child(const std::string& key) const {
    for (const auto& c : children)
        if (c.name == key) return &c;
    return nullptr;
}

std::string ConfNode::where() const { return file + ":" + std::to_string(line); }

const char* ConfNode::kindName() const {
    switch (kind) {
        case Kind::Scalar: return "a value";
        case Kind::List: return "a list";
        case Kind::Group: return "a group";
    }
    return "?";
}

namespace {

std::string formatFloat(double d) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.15g", d);
    return buf;
}

ConfNode convert(const libconfig::Setting& s, const std::string& fallbackFile) {
    ConfNode n;
    if (s.getName()) n.name = s.getName();
    n.file = s.getSourceFile() ? s.getSourceFile() : fallbackFile;
    n.line = static_cast<int>(s.getSourceLine());
    switch (s.getType()) {
        case libconfig::Setting::TypeGroup:
            n.kind = ConfNode::Kind::Group;
            break;
        case libconfig::Setting::TypeArray:
        case libconfig::Setting::TypeList:
            n.kind = ConfNode::Kind::List;
            break;
        case libconfig::Setting::TypeInt:
            n.kind = ConfNode::Kind::Scalar;
            n.scalarType = ConfNode::ScalarType::Integer;
            n.value = std::to_string(static_cast<int>(s));
            break;
        case libconfig::Setting::TypeInt64:
            n.kind = ConfNode::Kind::Scalar;
            n.scalarType = ConfNode::ScalarType::Integer;
            n.value = std::to_string(static_cast<long long>(s));
            break;
        case libconfig::Setting::TypeFloat:
            n.kind = ConfNode::Kind::Scalar;
            n.scalarType = ConfNode::ScalarType::Float;
            n.value = formatFloat(static_cast<double>(s));
            break;
        case libconfig::Setting::TypeBoolean:
            n.kind = ConfNode::Kind::Scalar;
            n.scalarType = ConfNode::ScalarType::Boolean;
            n.value = static_cast<bool>(s) ? "true" : "false";
            break;
        case libconfig::Setting::TypeString:
            n.kind = ConfNode::Kind::Scalar;
            n.scalarType = ConfNode::ScalarType::String;
            n.value = static_cast<const char*>(s);
            break;
        default:
            n.kind = ConfNode::Kind::Scalar;
            break;
    }
    if (n.kind != ConfNode::Kind::Scalar) {
        for (int i = 0; i < s.getLength(); ++i) n.children.push_back(convert(s[i], n.file));
    }
    return n;
}

ConfNode finish(libconfig::Config& cfg, const std::string& name) {
    ConfNode root = convert(cfg.getRoot(), name);
    root.file = name;
    if (root.line == 0) root.line = 1;
    return root;
}

}  // namespace

ConfNode readLibconfigFile(const std::string& path) {
    libconfig::Config cfg;
    cfg.setAutoConvert(true);
    // @include paths are relative to the directory of the main file.
    std::string dir = ".";
    auto slash = path.rfind('/');
    if (slash != std::string::npos) dir = path.substr(0, slash == 0 ? 1 : slash);
    cfg.setIncludeDir(dir.c_str());
    try {
        cfg.readFile(path.c_str());
    } catch (const libconfig::FileIOException&) {
        throw ConfigError(path + ": cannot read configuration file");
    } catch (const libconfig::ParseException& e) {
        std::ostringstream os;
        os << (e.getFile() ? e.getFile() : path) << ":" << e.getLine() << ": syntax error: " << e.getError();
        throw ConfigError(os.str());
    }
    return finish(cfg, path);
}

ConfNode readLibconfigString(const std::string& text, const std::string& name) {
    libconfig::Config cfg;
    cfg.setAutoConvert(true);
    try {
        cfg.readString(text);
    } catch (const libconfig::ParseException& e) {
        std::ostringstream os;
        os << name << ":" << e.getLine() << ": syntax error: " << e.getError();
        throw ConfigError(os.str());
    }
    return finish(cfg, name);
}

}  // namespace mtp
