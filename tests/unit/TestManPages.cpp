// Unit tests that keep man/mtpolicyd.conf.5 and the declared settings in step, both ways.
//
// The code declares every key once, as data: globalSettings(), connectionSettings("Sql"),
// virtualHostSettings(), commonPluginSettings() and each plugin's PluginSpec in the Registry.
// The manual documents each key as a tagged paragraph under its section,
//
//   .TP
//   .BR \%max_requests " (integer, 0 to 1099511627776; default 1000)"
//
// with its type, integer range, default (or "required" / "not set by default") and "uc" when
// uc_<key> may override it. The tests check that every declared key is documented in its section,
// that every key the page documents there exists, that each plugin module has its own
// subsection under PLUGINS, and that the type, range, default and uc mark printed on the page are
// those of the code. Failures list every offending key with its line, and for missing keys the
// line to add.
//
// The page is found through $MTPOLICYD_SRCDIR (set by `make check`), else relative to this
// source file, else the current directory.
#include <cppunit/extensions/HelperMacros.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/core/Registry.h"

namespace {

const char* const kPage = "man/mtpolicyd.conf.5";
// Connection modules known to connectionSettings(); there is no table of them to iterate.
const char* const kConnectionModules[] = {"Sql"};

// --- finding and reading the page ------------------------------------------------------------

bool readFile(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return true;
}

std::string dirOf(const std::string& path, int levels) {
    std::string p = path;
    for (int i = 0; i < levels; ++i) {
        auto slash = p.rfind('/');
        if (slash == std::string::npos) return ".";
        p = p.substr(0, slash);
    }
    return p.empty() ? "/" : p;
}

// Returns the page text; `where` is set to the path that was read (or the paths tried).
std::string readPage(std::string& where) {
    std::vector<std::string> dirs;
    if (const char* d = std::getenv("MTPOLICYD_SRCDIR"))
        if (*d) dirs.push_back(d);
    dirs.push_back(dirOf(__FILE__, 3));  // <srcdir>/tests/unit/TestManPages.cpp
    dirs.push_back(".");
    std::string tried;
    for (const auto& d : dirs) {
        std::string path = d + "/" + kPage;
        std::string text;
        if (readFile(path, text)) {
            where = path;
            return text;
        }
        tried += (tried.empty() ? "" : ", ") + path;
    }
    where = tried;
    return "";
}

// --- a little troff ------------------------------------------------------------------------

// Text of a troff argument as the reader sees it: escapes for the characters the page uses.
std::string unescape(const std::string& s) {
    static const std::map<std::string, std::string> named = {
        {"dq", "\""}, {"aq", "'"}, {"ga", "`"}, {"em", "--"}, {"en", "-"}, {"bu", "*"},
        {"lq", "\""}, {"rq", "\""}, {"cq", "'"}, {"oq", "'"}, {"ti", "~"}, {"ha", "^"},
    };
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 >= s.size()) {
            out += s[i];
            continue;
        }
        char c = s[++i];
        switch (c) {
            case '%': case '&': case 'c': break;  // hyphenation, zero-width, continuation
            case '-': out += '-'; break;
            case 'e': case '\\': out += '\\'; break;
            case ' ': case '~': out += ' '; break;
            case '(':
                if (i + 2 < s.size()) {
                    auto it = named.find(s.substr(i + 1, 2));
                    out += it != named.end() ? it->second : "?";
                    i += 2;
                }
                break;
            case 'f':  // font change: \fB, \fI, \fP, \fR, \f(CW
                if (i + 1 < s.size()) i += s[i + 1] == '(' ? 3 : 1;
                break;
            default: out += c;
        }
    }
    return out;
}

// Splits a request line's arguments (after the request name) as troff does: blanks separate,
// double quotes group, "" inside quotes is a literal quote.
std::vector<std::string> troffArgs(const std::string& line) {
    std::vector<std::string> args;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') ++i;
        if (i >= line.size()) break;
        std::string a;
        if (line[i] == '"') {
            ++i;
            while (i < line.size()) {
                if (line[i] == '"') {
                    if (i + 1 < line.size() && line[i + 1] == '"') {
                        a += '"';
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                a += line[i++];
            }
        } else {
            while (i < line.size() && line[i] != ' ') a += line[i++];
        }
        args.push_back(a);
    }
    return args;
}

std::string unquoteTitle(const std::string& rest) {
    std::string t;
    for (const auto& a : troffArgs(rest)) t += (t.empty() ? "" : " ") + unescape(a);
    return t;
}

// One documented key: a `.TP` whose tag line is `.B key` or `.BR key " (description)"`, at the
// outer indentation level (items inside .RS/.RE are values of a key, not keys). Other tags at
// that level are kept with `raw` set, so that a key written in another form is not overlooked.
struct DocItem {
    std::string section;     // .SH title
    std::string subsection;  // .SS title, "" before the first
    std::string key;
    std::string desc;  // inside the parentheses, unescaped; "" when there is none
    std::string raw;   // a tag line that is not `.B key` / `.BR key ...`: key is then ""
    int line = 0;
};

std::vector<DocItem> parseItems(const std::string& text) {
    std::vector<DocItem> items;
    std::istringstream in(text);
    std::string line, section, subsection;
    int n = 0, rsDepth = 0;
    bool afterTp = false;
    while (std::getline(in, line)) {
        ++n;
        bool wasAfterTp = afterTp;
        afterTp = false;
        if (line.compare(0, 4, ".SH ") == 0) {
            section = unquoteTitle(line.substr(4));
            subsection.clear();
            rsDepth = 0;
        } else if (line.compare(0, 4, ".SS ") == 0) {
            subsection = unquoteTitle(line.substr(4));
            rsDepth = 0;
        } else if (line.compare(0, 3, ".RS") == 0) {
            ++rsDepth;
        } else if (line.compare(0, 3, ".RE") == 0) {
            if (rsDepth > 0) --rsDepth;
        } else if (line == ".TP" || line.compare(0, 4, ".TP ") == 0) {
            afterTp = true;
        } else if (wasAfterTp && rsDepth == 0) {
            DocItem it;
            it.section = section;
            it.subsection = subsection;
            it.line = n;
            bool bold = line.compare(0, 4, ".BR ") == 0 || line.compare(0, 3, ".B ") == 0;
            auto args = bold ? troffArgs(line.substr(line[2] == 'R' ? 4 : 3)) : std::vector<std::string>{};
            if (args.empty()) {  // a tag in another form: reported where keys are expected
                it.raw = line;
                items.push_back(it);
                continue;
            }
            it.key = unescape(args[0]);
            std::string rest;
            for (size_t i = 1; i < args.size(); ++i) rest += unescape(args[i]);
            auto open = rest.find('('), close = rest.rfind(')');
            if (open != std::string::npos && close != std::string::npos && close > open)
                it.desc = rest.substr(open + 1, close - open - 1);
            items.push_back(it);
        }
    }
    return items;
}

// --- what the code declares ----------------------------------------------------------------

// One expected key of a section: its description as the page must print it.
struct Expected {
    std::string key;
    std::string desc;
};

std::string formatDefault(const mtp::SettingSpec& s) {
    switch (s.type) {
        case mtp::SettingType::Boolean: return s.def == "1" ? "true" : s.def == "0" ? "false" : s.def;
        case mtp::SettingType::Integer:
        case mtp::SettingType::Number: return s.def;
        default: return "\"" + s.def + "\"";
    }
}

std::string describe(const mtp::SettingSpec& s) {
    std::string d = mtp::settingTypeName(s.type);
    if (s.min < s.max) d += ", " + std::to_string(s.min) + " to " + std::to_string(s.max);
    if (s.required)
        d += "; required";
    else if (s.hasDefault)
        d += "; default " + formatDefault(s);
    else
        d += "; not set by default";
    if (s.uc) d += "; uc";
    return d;
}

// A section of the page, "SECTION" or "SECTION/Subsection", and its keys.
using Sections = std::map<std::string, std::vector<Expected>>;

void addTable(std::vector<Expected>& out, const mtp::SettingTable& t) {
    for (const auto& s : t) {
        bool dup = false;
        for (auto& e : out)
            if (e.key == s.name) dup = true;
        if (!dup) out.push_back({s.name, describe(s)});
    }
}

Sections declaredSections() {
    Sections m;
    addTable(m["GLOBAL SETTINGS"], mtp::globalSettings());
    for (const char* module : kConnectionModules)
        if (const auto* t = mtp::connectionSettings(module)) addTable(m["CONNECTIONS"], *t);
    addTable(m["VIRTUAL HOSTS"], mtp::virtualHostSettings());
    m["VIRTUAL HOSTS"].push_back({"plugins", "list of groups; required"});
    addTable(m["PLUGIN CHAINS/Settings of every plugin"], mtp::commonPluginSettings());
    for (const auto& spec : mtp::pluginSpecs()) {
        auto& v = m["PLUGINS/" + spec.module];
        addTable(v, spec.settings);
        if (spec.nested) v.push_back({"plugins", "list of groups; not set by default"});
    }
    return m;
}

// The section an item belongs to, or "" for parts of the page that document no settings
// (SYNTAX, the uc_ and score explanations, EXAMPLES, COMPATIBILITY, LEGACY FORMAT, ...).
std::string sectionOf(const DocItem& it) {
    if (it.section == "GLOBAL SETTINGS" || it.section == "CONNECTIONS" || it.section == "VIRTUAL HOSTS")
        return it.section;
    if (it.section == "PLUGIN CHAINS")
        return it.subsection == "Settings of every plugin" ? "PLUGIN CHAINS/" + it.subsection : "";
    if (it.section == "PLUGINS") return "PLUGINS/" + it.subsection;  // unknown modules reported
    return "";
}

struct PageFixture {
    std::string path, text;
    std::vector<DocItem> items;
    Sections declared;
    // Documented items by section (only the sections that document settings).
    std::map<std::string, std::vector<DocItem>> documented;

    PageFixture() {
        text = readPage(path);
        items = parseItems(text);
        declared = declaredSections();
        for (const auto& it : items) {
            std::string s = sectionOf(it);
            if (!s.empty()) documented[s].push_back(it);
        }
    }

    // The failure text: a short title, the report, and the page that was read.
    std::string message(const std::string& title, const std::string& report) const {
        return title + "\n" + report + "  (page: " + path + ")";
    }
};

std::string displaySection(const std::string& s) {
    auto slash = s.find('/');
    return slash == std::string::npos ? s : s.substr(0, slash) + ", subsection " + s.substr(slash + 1);
}

}  // namespace

class TestManPages : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(TestManPages);
    CPPUNIT_TEST(testPageIsParsed);
    CPPUNIT_TEST(testEveryPluginHasASection);
    CPPUNIT_TEST(testEveryDeclaredKeyIsDocumented);
    CPPUNIT_TEST(testEveryDocumentedKeyExists);
    CPPUNIT_TEST(testDescriptionsMatchCode);
    CPPUNIT_TEST(testParser);
    CPPUNIT_TEST_SUITE_END();

public:
    // The page is there and the parser finds the sections it expects, so that the other tests
    // cannot pass by reading nothing.
    void testPageIsParsed() {
        PageFixture f;
        CPPUNIT_ASSERT_MESSAGE("cannot read " + f.path + " (set MTPOLICYD_SRCDIR to the source tree)",
                               !f.text.empty());
        for (const char* s : {"GLOBAL SETTINGS", "CONNECTIONS", "VIRTUAL HOSTS",
                              "PLUGIN CHAINS/Settings of every plugin"})
            CPPUNIT_ASSERT_MESSAGE(f.message(std::string("no documented keys found in section ") +
                                                 displaySection(s), ""),
                                   !f.documented[s].empty());
        CPPUNIT_ASSERT(f.items.size() > 40);
    }

    void testEveryPluginHasASection() {
        PageFixture f;
        CPPUNIT_ASSERT_MESSAGE("cannot read " + f.path, !f.text.empty());
        std::set<std::string> subsections;
        std::istringstream in(f.text);
        std::string line, section;
        while (std::getline(in, line)) {
            if (line.compare(0, 4, ".SH ") == 0) section = unquoteTitle(line.substr(4));
            if (section == "PLUGINS" && line.compare(0, 4, ".SS ") == 0)
                subsections.insert(unquoteTitle(line.substr(4)));
        }
        std::string report;
        for (const auto& spec : mtp::pluginSpecs())
            if (!subsections.count(spec.module))
                report += "  plugin module " + spec.module + " has no \".SS " + spec.module +
                          "\" under \".SH PLUGINS\"\n";
        for (const auto& s : subsections)
            if (!mtp::findPluginSpec(s))
                report += "  \".SS " + s + "\" under \".SH PLUGINS\" is not a plugin module in the Registry\n";
        CPPUNIT_ASSERT_MESSAGE(f.message("plugin sections do not match the Registry:", report), report.empty());
    }

    void testEveryDeclaredKeyIsDocumented() {
        PageFixture f;
        CPPUNIT_ASSERT_MESSAGE("cannot read " + f.path, !f.text.empty());
        std::string report;
        for (const auto& [section, keys] : f.declared) {
            const auto& docs = f.documented[section];
            for (const auto& e : keys) {
                bool found = false;
                for (const auto& d : docs)
                    if (d.raw.empty() && d.key == e.key) found = true;
                if (!found)
                    report += "  " + displaySection(section) + ": " + e.key + "\n    .TP\n    .BR " + e.key +
                              " \" (" + e.desc + ")\"\n";
            }
        }
        CPPUNIT_ASSERT_MESSAGE(f.message("declared keys missing from the page:", report), report.empty());
    }

    void testEveryDocumentedKeyExists() {
        PageFixture f;
        CPPUNIT_ASSERT_MESSAGE("cannot read " + f.path, !f.text.empty());
        std::string report;
        for (const auto& [section, docs] : f.documented) {
            auto it = f.declared.find(section);
            std::map<std::string, int> seen;
            for (const auto& d : docs) {
                if (!d.raw.empty()) {
                    report += "  line " + std::to_string(d.line) + ": " + displaySection(section) +
                              ": tag not of the form .BR key \" (...)\": " + d.raw + "\n";
                    continue;
                }
                bool known = false;
                if (it != f.declared.end())
                    for (const auto& e : it->second)
                        if (e.key == d.key) known = true;
                if (!known)
                    report += "  line " + std::to_string(d.line) + ": " + displaySection(section) + ": " + d.key +
                              (it == f.declared.end() ? " (no such plugin module)" : "") + "\n";
                if (seen.count(d.key))
                    report += "  line " + std::to_string(d.line) + ": " + displaySection(section) + ": " + d.key +
                              " documented twice (first on line " + std::to_string(seen[d.key]) + ")\n";
                else
                    seen[d.key] = d.line;
            }
        }
        CPPUNIT_ASSERT_MESSAGE(f.message("documented keys that the code does not declare:", report),
                               report.empty());
    }

    void testDescriptionsMatchCode() {
        PageFixture f;
        CPPUNIT_ASSERT_MESSAGE("cannot read " + f.path, !f.text.empty());
        std::string report;
        for (const auto& [section, docs] : f.documented) {
            auto it = f.declared.find(section);
            if (it == f.declared.end()) continue;
            for (const auto& d : docs)
                for (const auto& e : it->second)
                    if (e.key == d.key && d.desc != e.desc)
                        report += "  line " + std::to_string(d.line) + ": " + displaySection(section) + ": " +
                                  d.key + "\n    page: (" + d.desc + ")\n    code: (" + e.desc + ")\n";
        }
        CPPUNIT_ASSERT_MESSAGE(f.message("type, range, default or uc mark differ from the code:", report),
                               report.empty());
    }

    // The parser itself: sections, nesting, escapes and the description.
    void testParser() {
        const std::string page =
            ".SH GLOBAL SETTINGS\n"
            ".SS Listening\n"
            ".TP\n"
            ".BR \\%max_requests \" (integer, 0 to 4; default 1000)\"\n"
            "Text.\n"
            ".TP\n"
            ".BR port \" (list; default \\(dq127.0.0.1:12345\\(dq)\"\n"
            ".RS\n"
            ".TP\n"
            ".BR nested \" (string)\"\n"
            ".RE\n"
            ".TP\n"
            ".I string\n"
            ".SH \"PLUGIN CHAINS\"\n"
            ".SS \"Settings of every plugin\"\n"
            ".TP\n"
            ".B name\n";
        auto items = parseItems(page);
        CPPUNIT_ASSERT_EQUAL(size_t(4), items.size());
        CPPUNIT_ASSERT_EQUAL(std::string("max_requests"), items[0].key);
        CPPUNIT_ASSERT_EQUAL(std::string("integer, 0 to 4; default 1000"), items[0].desc);
        CPPUNIT_ASSERT_EQUAL(std::string("Listening"), items[0].subsection);
        CPPUNIT_ASSERT_EQUAL(4, items[0].line);
        CPPUNIT_ASSERT_EQUAL(std::string("list; default \"127.0.0.1:12345\""), items[1].desc);
        CPPUNIT_ASSERT_EQUAL(std::string(".I string"), items[2].raw);
        CPPUNIT_ASSERT_EQUAL(std::string(""), items[2].key);
        CPPUNIT_ASSERT_EQUAL(std::string("PLUGIN CHAINS"), items[3].section);
        CPPUNIT_ASSERT_EQUAL(std::string("Settings of every plugin"), items[3].subsection);
        CPPUNIT_ASSERT_EQUAL(std::string("name"), items[3].key);
        CPPUNIT_ASSERT_EQUAL(std::string(""), items[3].desc);
        CPPUNIT_ASSERT(items[3].raw.empty());

        mtp::SettingSpec s = mtp::overridable(mtp::withDefault("enabled", mtp::SettingType::Boolean, "1", ""));
        CPPUNIT_ASSERT_EQUAL(std::string("boolean; default true; uc"), describe(s));
        s = mtp::ranged(mtp::withDefault("n", mtp::SettingType::Integer, "5", ""), 1, 9);
        CPPUNIT_ASSERT_EQUAL(std::string("integer, 1 to 9; default 5"), describe(s));
        s = mtp::withDefault("p", mtp::SettingType::String, "%Y-%m", "");
        CPPUNIT_ASSERT_EQUAL(std::string("string; default \"%Y-%m\""), describe(s));
        s = mtp::required("f", mtp::SettingType::List, "");
        CPPUNIT_ASSERT_EQUAL(std::string("list; required"), describe(s));
        s = mtp::optional("o", mtp::SettingType::Number, "");
        CPPUNIT_ASSERT_EQUAL(std::string("number; not set by default"), describe(s));
    }
};

CPPUNIT_TEST_SUITE_REGISTRATION(TestManPages);
