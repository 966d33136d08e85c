// The reader of mtpolicyd 2.x configuration files (Config::General syntax) into the ConfNode
// tree of the native format, the format detection used by Config::load, and the conversion of
// such a file to native libconfig text (mtpolicyd --convert-config).
//
// Mail::MtPolicyd parses its file with Config::General's ParseConfig(-ConfigFile,
// -AllowMultiOptions => 'no', -Tie => 'Tie::IxHash'); every other option keeps its default:
// no -IncludeRelative, -UseApacheInclude, -IncludeGlob, -InterPolateVars, -AutoTrue,
// -LowerCaseNames or -MergeDuplicate*; C comments and here-documents are on, SplitPolicy is
// 'guess', and the order of the file is kept (Tie::IxHash: plugins run in file order).
// The reader follows Config::General 2.6x in three steps, each owning only its own data:
//   1. LineReader: comments, continuation lines, here-documents, empty blocks <X name/> and
//      <<include FILE>>, giving the logical lines with their file and line;
//   2. parseBlocks: the key/value split and unquoting, <Block name> nesting, and the refusal of
//      repeated keys and blocks (AllowMultiOptions => 'no');
//   3. Mapper: the mtpolicyd blocks onto the native tree, with the checks of what this
//      implementation does not support.
// Deliberate differences, all documented in mtpolicyd.conf(5) "LEGACY FORMAT": '#' and C
// comments inside a pair of double quotes on one line belong to the value (Config::General cut
// the line there; a warning says so); includes are relative to the including file (Config::
// General tried the working directory first) and may be quoted; what Config::General skipped
// silently (an unterminated here-document, comment or continuation, a file included twice, a
// '*/' without '/*') and unknown keys and blocks are errors with file and line.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "mtpolicyd/core/ConfNode.h"
#include "mtpolicyd/core/Config.h"
#include "mtpolicyd/core/Registry.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {

namespace {

const int kMaxIncludeDepth = 16;       // <<include>> nesting
const size_t kMaxBlockDepth = 16;      // <VirtualHost> <Plugin> <Plugin> ...
const size_t kMaxFileSize = 16 << 20;  // bytes per file

// The mtpolicyd 2.05 plugin modules, to tell "not implemented yet" from a typo.
const char* const kPerlModules[] = {
    "Accounting", "Action", "AddScoreHeader", "ClearFields", "Condition", "CtIpRep", "DBL",
    "Eval", "Fail2Ban", "GeoIPAction", "GeoIPLookup", "Greylist", "Honeypot", "LdapUserConfig",
    "PostfixMap", "Proxy", "Quota", "RBL", "RBLAction", "RegexList", "SMTPVerify", "SPF",
    "SaAwlAction", "SaAwlLookup", "ScoreAction", "SetField", "SqlList", "SqlUserConfig", "Stress"};

const char* const kBlockTypes[] = {"VirtualHost", "Plugin", "Connection", "SessionCache"};

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::string ltrim(const std::string& s) {
    size_t i = 0;
    while (i < s.size() && isSpace(s[i])) ++i;
    return s.substr(i);
}

std::string rtrim(const std::string& s) {
    size_t n = s.size();
    while (n > 0 && isSpace(s[n - 1])) --n;
    return s.substr(0, n);
}

std::string trimAll(const std::string& s) { return rtrim(ltrim(s)); }

std::string at(const std::string& file, int line) { return file + ":" + std::to_string(line); }

std::string dirName(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

bool readWholeFile(const std::string& path, std::string& out, std::string& why) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
        why = "no such file";
        return false;
    }
    if (S_ISDIR(st.st_mode)) {
        why = "is a directory";
        return false;
    }
    if (static_cast<unsigned long long>(st.st_size) > kMaxFileSize) {
        why = "larger than " + std::to_string(kMaxFileSize) + " bytes";
        return false;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        why = "cannot be read";
        return false;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return true;
}

// --- step 1: logical lines --------------------------------------------------------------------

struct Line {
    std::string text;  // trimmed content; for a here-document its key
    std::string value;  // here-document: its text
    bool heredoc = false;
    std::string file;
    int line = 0;
    std::string where() const { return at(file, line); }
};

// Pairs of double quotes on one line: a '"' that does not follow a backslash opens a string
// when another such '"' closes it later on the line.
using Spans = std::vector<std::pair<size_t, size_t>>;

Spans quoteSpans(const std::string& s) {
    Spans spans;
    auto quote = [&](size_t k) { return s[k] == '"' && (k == 0 || s[k - 1] != '\\'); };
    size_t i = 0;
    while (i < s.size()) {
        if (!quote(i)) {
            ++i;
            continue;
        }
        size_t j = i + 1;
        while (j < s.size() && !quote(j)) ++j;
        if (j >= s.size()) break;
        spans.push_back({i, j});
        i = j + 1;
    }
    return spans;
}

bool quoted(const Spans& spans, size_t pos) {
    for (const auto& sp : spans)
        if (pos > sp.first && pos < sp.second) return true;
    return false;
}

size_t findOutside(const std::string& s, const std::string& what, const Spans& spans, size_t from = 0) {
    for (size_t p = s.find(what, from); p != std::string::npos; p = s.find(what, p + 1))
        if (!quoted(spans, p)) return p;
    return std::string::npos;
}

size_t rfindOutside(const std::string& s, const std::string& what, const Spans& spans) {
    for (size_t p = s.rfind(what); p != std::string::npos; p = p == 0 ? std::string::npos : s.rfind(what, p - 1))
        if (!quoted(spans, p)) return p;
    return std::string::npos;
}

// The first unescaped '#' (Config::General: s/(?<!\\)#.*$//), outside quotes when `spans`.
size_t findHash(const std::string& s, const Spans& spans) {
    for (size_t p = s.find('#'); p != std::string::npos; p = s.find('#', p + 1))
        if ((p == 0 || s[p - 1] != '\\') && !quoted(spans, p)) return p;
    return std::string::npos;
}

// What Config::General makes of a line outside a C comment: one /* ... */ (from the first
// '/*' to the last '*/') removed, or everything up to a '*/' without '/*', and everything from
// an unescaped '#', quotes or not. Only used to warn where this reader differs.
std::string perlStrip(std::string s) {
    size_t open = s.find("/*");
    size_t close = open == std::string::npos ? std::string::npos : s.rfind("*/");
    if (open != std::string::npos && close != std::string::npos && close >= open + 2) {
        size_t a = open, b = close + 2;
        while (a > 0 && isSpace(s[a - 1])) --a;
        while (b < s.size() && isSpace(s[b])) ++b;
        s = s.substr(0, a) + s.substr(b);
    } else if (s.rfind("*/") != std::string::npos) {
        s = s.substr(s.rfind("*/") + 2);
    }
    size_t h = findHash(s, Spans());
    if (h != std::string::npos) s.resize(h);
    return s;
}

// <Type name> header: Config::General's rules for quoted and named blocks.
void splitBlockHeader(const std::string& inner, std::string& type, std::string& name, bool& named) {
    named = false;
    name.clear();
    if (inner.size() >= 3 && inner.front() == '"' && inner.back() == '"' &&
        inner.find('"', 1) == inner.size() - 1) {
        type = inner.substr(1, inner.size() - 2);
        return;
    }
    size_t typeEnd;
    if (inner[0] == '"' && inner.find('"', 1) != std::string::npos && inner.find('"', 1) > 1) {
        typeEnd = inner.find('"', 1) + 1;
        type = inner.substr(1, typeEnd - 2);
        if (typeEnd < inner.size() && !isSpace(inner[typeEnd])) {  // "a"b: no match, take it whole
            type = inner;
            return;
        }
    } else {
        typeEnd = 0;
        while (typeEnd < inner.size() && !isSpace(inner[typeEnd])) ++typeEnd;
        type = inner.substr(0, typeEnd);
    }
    std::string rest = trimAll(inner.substr(typeEnd));
    if (rest.size() >= 3 && rest.front() == '"' && rest.back() == '"' && rest.find('"', 1) == rest.size() - 1)
        rest = rest.substr(1, rest.size() - 2);
    if (!rest.empty()) {
        name = rest;
        named = true;
    }
}

class LineReader {
public:
    explicit LineReader(std::vector<std::string>* warnings) : warnings_(warnings) {}

    std::vector<Line> lines;

    // `includedAt`: the <<include>> line ("" for the main file).
    void readFile(const std::string& path, const std::string& includedAt, int depth) {
        std::string text, why;
        if (!readWholeFile(path, text, why)) {
            if (includedAt.empty()) throw ConfigError(path + ": cannot read configuration file (" + why + ")");
            throw ConfigError(includedAt + ": <<include " + path + ">>: " + why);
        }
        readText(text, path, depth, includedAt);
    }

    void readText(const std::string& text, const std::string& name, int depth, const std::string& includedAt) {
        // A file that is being read (a cycle) or was read before: Config::General skipped the
        // second reading with a warning on stderr; an error is clearer.
        char* real = ::realpath(name.c_str(), nullptr);
        std::string id = real ? real : "";
        std::free(real);
        if (!id.empty()) {
            for (const auto& o : open_)
                if (o == id)
                    throw ConfigError(includedAt + ": <<include " + name + ">>: include cycle (the file is already being read)");
            auto seen = done_.find(id);
            if (seen != done_.end())
                throw ConfigError(includedAt + ": <<include " + name + ">>: the file was already read (" +
                                  seen->second + "); mtpolicyd 2.x skipped a second include");
            done_[id] = includedAt.empty() ? "it is the main file" : "included at " + includedAt;
            open_.push_back(id);
        }
        lex(text, name, depth);
        if (!id.empty()) open_.pop_back();
    }

private:
    void warn(const std::string& w) {
        if (warnings_) warnings_->push_back(w);
    }

    void push(const std::string& text, const std::string& file, int line) {
        Line l;
        l.text = text;
        l.file = file;
        l.line = line;
        lines.push_back(std::move(l));
    }

    void lex(const std::string& text, const std::string& file, int depth) {
        size_t pos = 0;
        if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;  // UTF-8 byte order mark
        int n = 0;
        bool inHeredoc = false, inComment = false, haveLong = false;
        std::string hdKey, hdEnd, longline;
        std::vector<std::string> hdLines;
        int hdLine = 0, commentLine = 0, longLine = 0;
        while (pos < text.size()) {
            size_t nl = text.find('\n', pos);
            std::string raw = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
            pos = nl == std::string::npos ? text.size() : nl + 1;
            ++n;
            if (!raw.empty() && raw.back() == '\r') raw.pop_back();
            std::string where = at(file, n);
            if (raw.find('\0') != std::string::npos) throw ConfigError(where + ": NUL byte in the line");

            if (inHeredoc) {
                // Only the end marker is looked for: ^(\s*)END\s*$
                size_t ws = 0;
                while (ws < raw.size() && isSpace(raw[ws])) ++ws;
                if (rtrim(raw.substr(ws)) == hdEnd) {
                    std::string indent = raw.substr(0, ws), value;
                    if (!indent.empty()) {
                        // An indented end marker removes that indentation from every line.
                        for (auto& l : hdLines) value += (l.compare(0, indent.size(), indent) == 0 ? l.substr(indent.size()) : l) + "\n";
                    } else {
                        for (size_t i = 0; i < hdLines.size(); ++i) value += (i ? "\n" : "") + hdLines[i];
                    }
                    Line l;
                    l.heredoc = true;
                    l.text = hdKey;
                    l.value = trimAll(value);
                    l.file = file;
                    l.line = hdLine;
                    lines.push_back(std::move(l));
                    inHeredoc = false;
                    hdLines.clear();
                } else {
                    hdLines.push_back(raw);
                }
                continue;
            }

            std::string s = raw;
            bool commentSeen = false, afterComment = false;
            if (inComment) {
                size_t e = s.rfind("*/");
                if (e == std::string::npos) continue;
                s = s.substr(e + 2);
                inComment = false;
                commentSeen = afterComment = true;
            }
            Spans spans = quoteSpans(s);
            size_t open = findOutside(s, "/*", spans);
            if (open != std::string::npos) {
                size_t close = rfindOutside(s, "*/", spans);
                if (close != std::string::npos && close >= open + 2) {
                    // Config::General removes the comment with the blanks around it.
                    size_t a = open, b = close + 2;
                    while (a > 0 && isSpace(s[a - 1])) --a;
                    while (b < s.size() && isSpace(s[b])) ++b;
                    s = s.substr(0, a) + s.substr(b);
                    spans = quoteSpans(s);
                    commentSeen = true;
                } else if (trimAll(s.substr(0, open)).empty()) {
                    inComment = true;
                    commentLine = n;
                    continue;
                }
                // Otherwise a '/*' after other text, with no '*/', is text (as in Config::General).
            }
            if (!commentSeen && findOutside(s, "*/", spans) != std::string::npos)
                throw ConfigError(where + ": '*/' without a '/*' before it (mtpolicyd 2.x dropped the line up to it)");
            size_t hash = findHash(s, spans);
            if (hash != std::string::npos) s.resize(hash);
            if (!afterComment && raw.find('"') != std::string::npos && perlStrip(raw) != s)
                warn(where + ": a '#' or '/*' inside double quotes is read as part of the value; mtpolicyd 2.x "
                             "took it as the start of a comment (write \\# to be read the same by both)");

            // A trailing backslash (not itself escaped) continues the line.
            if (!s.empty() && s.back() == '\\' && (s.size() < 2 || s[s.size() - 2] != '\\')) {
                s.pop_back();
                if (!haveLong) {
                    haveLong = true;
                    longLine = n;
                    longline.clear();
                }
                longline += ltrim(s);
                continue;
            }
            if (haveLong) {
                // The continued line is taken as it is (no include or here-document).
                longline += ltrim(s);
                if (!trimAll(longline).empty()) push(trimAll(longline), file, longLine);
                haveLong = false;
                continue;
            }

            std::string t = trimAll(s);
            if (t.empty()) continue;

            // <Name key/> is an empty block.
            if (t.size() >= 4 && t[0] == '<' && t[1] != '/' && t[1] != '<' && t.compare(t.size() - 2, 2, "/>") == 0) {
                std::string inner = trimAll(t.substr(1, t.size() - 3));
                if (!inner.empty()) {
                    std::string type, name;
                    bool named;
                    splitBlockHeader(inner, type, name, named);
                    push("<" + inner + ">", file, n);
                    push("</" + type + ">", file, n);
                    continue;
                }
            }

            // Here-document: "key = <<END" or "key <<END".
            {
                std::string key, marker;
                size_t eq = t.find('=');
                if (eq != std::string::npos && eq > 0) {
                    std::string after = ltrim(t.substr(eq + 1));
                    if (after.compare(0, 2, "<<") == 0) {
                        key = rtrim(t.substr(0, eq));
                        marker = trimAll(after.substr(2));
                    }
                }
                if (key.empty() || marker.empty()) {
                    key.clear();
                    size_t sp = 0;
                    while (sp < t.size() && !isSpace(t[sp])) ++sp;
                    if (sp > 0 && sp < t.size()) {
                        std::string after = ltrim(t.substr(sp));
                        if (after.compare(0, 2, "<<") == 0) {
                            key = t.substr(0, sp);
                            marker = trimAll(after.substr(2));
                        }
                    }
                }
                if (!key.empty() && !marker.empty()) {
                    inHeredoc = true;
                    hdKey = key;
                    hdEnd = marker;
                    hdLine = n;
                    hdLines.clear();
                    continue;
                }
            }

            // <<include FILE>>
            if (t.size() > 12 && t.compare(0, 2, "<<") == 0 && toLower(t.substr(2, 7)) == "include" &&
                isSpace(t[9]) && t.compare(t.size() - 2, 2, ">>") == 0) {
                std::string inc = trimAll(t.substr(10, t.size() - 12));
                if (inc.size() >= 2 && (inc.front() == '"' || inc.front() == '\'') && inc.back() == inc.front())
                    inc = inc.substr(1, inc.size() - 2);
                if (inc.empty()) throw ConfigError(where + ": <<include>> without a file name");
                if (depth + 1 > kMaxIncludeDepth)
                    throw ConfigError(where + ": <<include " + inc + ">>: includes nested more than " +
                                      std::to_string(kMaxIncludeDepth) + " deep");
                std::string path = inc[0] == '/' ? inc : dirName(file) + "/" + inc;
                readFile(path, where, depth + 1);
                continue;
            }
            push(t, file, n);
        }
        if (inHeredoc)
            throw ConfigError(at(file, hdLine) + ": here-document '" + hdKey + " <<" + hdEnd +
                              "' has no end line '" + hdEnd + "'");
        if (inComment) throw ConfigError(at(file, commentLine) + ": comment '/*' is not closed by '*/'");
        if (haveLong)
            throw ConfigError(at(file, longLine) + ": continued line (trailing backslash) at the end of the file");
    }

    std::vector<std::string>* warnings_;
    std::vector<std::string> open_;            // real paths of the files being read
    std::map<std::string, std::string> done_;  // real path -> where it was read
};

// --- step 2: Config::General blocks ------------------------------------------------------------

struct CgNode {
    bool block = false;
    std::string key;  // option name or block type
    std::string name;  // block name
    bool named = false;
    bool hasValue = false;
    std::string value;
    std::string file;
    int line = 0;
    std::vector<CgNode> children;

    std::string where() const { return at(file, line); }
    std::string tag() const { return named ? "<" + key + " " + name + ">" : "<" + key + ">"; }
    const CgNode* option(const std::string& k) const {
        for (const auto& c : children)
            if (!c.block && c.key == k) return &c;
        return nullptr;
    }
};

// Config::General's value clean-up: surrounding double quotes, then \$ \\ \" \# escapes.
std::string cleanValue(std::string v) {
    if (!v.empty() && v.front() == '"' && v.back() == '"') {
        v.erase(0, 1);
        if (!v.empty() && v.back() == '"') v.pop_back();
    }
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
        if (v[i] == '\\' && i + 1 < v.size() &&
            (v[i + 1] == '$' || v[i + 1] == '\\' || v[i + 1] == '"' || v[i + 1] == '#')) {
            out += v[++i];
        } else {
            out += v[i];
        }
    }
    return out;
}

// split /\s*=\s*|\s+/, $line, 2
void splitOption(const std::string& t, std::string& key, std::string& value, bool& hasValue) {
    for (size_t p = 0; p < t.size(); ++p) {
        size_t q = p;
        while (q < t.size() && isSpace(t[q])) ++q;
        if (q < t.size() && t[q] == '=') {
            ++q;
            while (q < t.size() && isSpace(t[q])) ++q;
            key = t.substr(0, p);
            value = t.substr(q);
            hasValue = true;
            return;
        }
        if (isSpace(t[p])) {
            key = t.substr(0, p);
            value = t.substr(q);
            hasValue = true;
            return;
        }
    }
    key = t;
    value.clear();
    hasValue = false;
}

// Adds `n` to `parent`, refusing what Config::General refuses with AllowMultiOptions => 'no'.
void addChild(CgNode& parent, CgNode&& n) {
    for (const auto& c : parent.children) {
        if (!n.block && !c.block && c.key == n.key)
            throw ConfigError(n.where() + ": key '" + n.key + "' is set twice (first at " + c.where() +
                              "); mtpolicyd 2.x refuses repeated keys too");
        if (n.block != c.block && c.key == n.key) {
            const CgNode& b = n.block ? n : c;
            const CgNode& o = n.block ? c : n;
            throw ConfigError(n.where() + ": '" + n.key + "' is both a key (" + o.where() + ") and a block " +
                              b.tag() + " (" + b.where() + ")");
        }
        if (n.block && c.block && c.key == n.key) {
            if (n.named && c.named && c.name == n.name)
                throw ConfigError(n.where() + ": block " + n.tag() + " occurs twice (first at " + c.where() +
                                  "); mtpolicyd 2.x refuses repeated blocks too");
            if (!n.named || !c.named)
                throw ConfigError(n.where() + ": block <" + n.key + "> occurs more than once (first at " +
                                  c.where() + ")" +
                                  (n.named != c.named ? ", once with and once without a name" : ""));
        }
    }
    parent.children.push_back(std::move(n));
}

CgNode parseBlocks(const std::vector<Line>& lines, const std::string& file) {
    std::vector<CgNode> stack(1);
    stack[0].block = true;
    stack[0].file = file;
    stack[0].line = 1;
    for (const auto& l : lines) {
        const std::string& t = l.text;
        if (!l.heredoc && t.size() >= 3 && t[0] == '<' && t[1] == '/' && t.back() == '>') {
            std::string type = trimAll(t.substr(2, t.size() - 3));
            if (stack.size() == 1)
                throw ConfigError(l.where() + ": </" + type + "> without an opening <" + type + ">");
            CgNode done = std::move(stack.back());
            stack.pop_back();
            if (toLower(type) != toLower(done.key))
                throw ConfigError(l.where() + ": </" + type + "> does not close " + done.tag() + " (opened at " +
                                  done.where() + ")");
            addChild(stack.back(), std::move(done));
            continue;
        }
        if (!l.heredoc && t.size() >= 3 && t[0] == '<' && t.back() == '>' && t[1] != '/' && t[1] != '<') {
            CgNode b;
            b.block = true;
            splitBlockHeader(t.substr(1, t.size() - 2), b.key, b.name, b.named);
            b.file = l.file;
            b.line = l.line;
            if (b.key.empty()) throw ConfigError(l.where() + ": block without a name: " + t);
            if (stack.size() > kMaxBlockDepth)
                throw ConfigError(l.where() + ": blocks nested more than " + std::to_string(kMaxBlockDepth) + " deep");
            stack.push_back(std::move(b));
            continue;
        }
        if (!l.heredoc && !t.empty() && t[0] == '<')
            throw ConfigError(l.where() + ": not a block, an end of block or an <<include FILE>>: " + t);
        CgNode o;
        o.file = l.file;
        o.line = l.line;
        if (l.heredoc) {
            o.key = l.text;
            o.value = cleanValue(l.value);
            o.hasValue = true;
        } else {
            std::string v;
            splitOption(t, o.key, v, o.hasValue);
            if (o.hasValue) o.value = cleanValue(v);
        }
        if (o.key.empty()) throw ConfigError(l.where() + ": a value without a key: " + t);
        addChild(stack.back(), std::move(o));
    }
    if (stack.size() > 1)
        throw ConfigError(stack.back().where() + ": block " + stack.back().tag() + " has no </" + stack.back().key + ">");
    return std::move(stack[0]);
}

// --- step 3: mtpolicyd blocks -> native tree ---------------------------------------------------

ConfNode scalar(const std::string& name, const std::string& value, const std::string& file, int line) {
    ConfNode n;
    n.kind = ConfNode::Kind::Scalar;
    n.scalarType = ConfNode::ScalarType::String;
    n.name = name;
    n.value = value;
    n.file = file;
    n.line = line;
    return n;
}

ConfNode scalar(const CgNode& o) { return scalar(o.key, o.value, o.file, o.line); }

bool isBlockType(const std::string& k) {
    for (const char* b : kBlockTypes)
        if (k == b) return true;
    return false;
}

std::string blockTypeHint(const std::string& k) {
    for (const char* b : kBlockTypes)
        if (toLower(k) == toLower(b)) return " (names are case-sensitive: <" + std::string(b) + ">)";
    return "";
}

class Mapper {
public:
    explicit Mapper(std::vector<std::string>* warnings) : warnings_(warnings) {}

    ConfNode map(const CgNode& root, const std::string& file) {
        ConfNode out;
        out.kind = ConfNode::Kind::Group;
        out.file = file;
        out.line = 1;
        ConfNode conns;
        conns.kind = ConfNode::Kind::Group;
        conns.name = "connections";
        ConfNode vhosts;
        vhosts.kind = ConfNode::Kind::List;
        vhosts.name = "virtual_hosts";
        const CgNode* sessionCache = nullptr;
        // Connections first: plugins may refer to them wherever they are in the file.
        for (const auto& c : root.children) {
            if (!c.block) {
                if (checkGlobalKey(c)) out.children.push_back(scalar(c));
            } else if (c.key == "Connection") {
                if (!c.named) throw ConfigError(c.where() + ": <Connection> needs a name: <Connection NAME>");
                if (conns.line == 0) {
                    conns.file = c.file;
                    conns.line = c.line;
                }
                mapConnection(c, conns);
            } else if (c.key == "SessionCache") {
                sessionCache = &c;
            } else if (c.key == "Plugin") {
                throw ConfigError(c.where() + ": block " + c.tag() + " outside of a <VirtualHost PORT> block");
            } else if (c.key != "VirtualHost") {
                throw ConfigError(c.where() + ": unknown block " + c.tag() + blockTypeHint(c.key) +
                                  "; mtpolicyd 2.x reads <VirtualHost>, <Plugin>, <Connection> and <SessionCache>");
            }
        }
        warnOldKeys();
        if (sessionCache) mapSessionCache(*sessionCache, out);
        for (const auto& c : root.children) {
            if (!c.block || c.key != "VirtualHost") continue;
            if (vhosts.line == 0) {
                vhosts.file = c.file;
                vhosts.line = c.line;
            }
            vhosts.children.push_back(mapVirtualHost(c));
        }
        if (!conns.children.empty()) out.children.push_back(std::move(conns));
        if (vhosts.children.empty())
            throw ConfigError(at(file, 1) + ": no virtual hosts configured: a <VirtualHost PORT> block is required");
        out.children.push_back(std::move(vhosts));
        return out;
    }

private:
    void warn(const std::string& w) {
        if (warnings_) warnings_->push_back(w);
    }

    static void needValue(const CgNode& o, const std::string& context) {
        if (!o.hasValue)
            throw ConfigError(o.where() + ": " + context + "key '" + o.key + "' has no value (write " + o.key +
                              " = VALUE)");
        if (isBlockType(o.key))
            throw ConfigError(o.where() + ": " + context + "'" + o.key + "' is a block: <" + o.key +
                              " ...> ... </" + o.key + ">");
    }

    // False for a key that is dropped with a warning.
    bool checkGlobalKey(const CgNode& o) {
        needValue(o, "");
        const std::string& k = o.key;
        if (k == "chroot" || k == "program_name")
            throw ConfigError(o.where() + ": key '" + k +
                              "' of mtpolicyd 2.x is not supported by this implementation; remove it");
        bool ours = false;
        for (const auto& s : globalSettings()) ours = ours || s.name == k;
        // The mtpolicyd 1.x keys: 2.x ignored them, and its own sample and test configurations
        // still carry them (db_dsn= with an empty value, memcached_servers, session_lock_*).
        if (!ours && (k == "db_dsn" || k == "db_user" || k == "db_password" || startsWith(k, "memcached_") ||
                      startsWith(k, "session_"))) {
            oldKeys_.push_back(&o);
            return false;
        }
        if (k == "connections" || k == "virtual_hosts")
            throw ConfigError(o.where() + ": key '" + k +
                              "' belongs to the native format; a mtpolicyd 2.x file has <Connection NAME> and "
                              "<VirtualHost PORT> blocks");
        return true;
    }

    // One warning for all the 1.x keys, at the first of them.
    void warnOldKeys() {
        if (oldKeys_.empty()) return;
        std::string list;
        for (const CgNode* o : oldKeys_) {
            if (!list.empty()) list += ", ";
            list += o->key;
            if (o->file != oldKeys_[0]->file) list += " (" + o->where() + ")";
        }
        warn(oldKeys_[0]->where() + ": " + (oldKeys_.size() == 1 ? "key " : "keys ") + list + ": " +
             (oldKeys_.size() == 1 ? "a mtpolicyd 1.x setting" : "mtpolicyd 1.x settings") +
             ", ignored by mtpolicyd 2.x and by this implementation (2.x uses <Connection> and <SessionCache> "
             "blocks); remove " + (oldKeys_.size() == 1 ? "it" : "them"));
    }

    static void noBlocksInside(const CgNode& b) {
        for (const auto& c : b.children)
            if (c.block) throw ConfigError(c.where() + ": block " + c.tag() + " is not allowed inside " + b.tag());
    }

    void mapConnection(const CgNode& b, ConfNode& conns) {
        noBlocksInside(b);
        std::string context = "connection '" + b.name + "': ";
        const CgNode* module = b.option("module");
        if (!module) throw ConfigError(b.where() + ": " + b.tag() + ": no module defined for connection " + b.name);
        for (const auto& o : b.children) needValue(o, context);
        if (module->value == "Memcached" || module->value == "Redis") {
            dropped_[b.name] = module->value;
            warn(b.where() + ": " + b.tag() + " (module " + module->value +
                 ") is not used: sessions are kept in the memory of each worker, and no plugin of this "
                 "implementation needs " + module->value);
            return;
        }
        ConfNode g;
        g.kind = ConfNode::Kind::Group;
        g.name = b.name;
        g.file = b.file;
        g.line = b.line;
        for (const auto& o : b.children) g.children.push_back(scalar(o));
        conns.children.push_back(std::move(g));
    }

    void mapSessionCache(const CgNode& b, ConfNode& out) {
        if (b.named) throw ConfigError(b.where() + ": <SessionCache> takes no name: " + b.tag());
        noBlocksInside(b);
        for (const auto& o : b.children) needValue(o, "<SessionCache>: ");
        const CgNode* module = b.option("module");
        if (!module) throw ConfigError(b.where() + ": <SessionCache>: no module defined for SessionCache");
        const std::string& m = module->value;
        if (m != "None" && m != "Memcached" && m != "Redis")
            throw ConfigError(module->where() + ": <SessionCache>: key 'module': unknown SessionCache module '" + m +
                              "' (mtpolicyd 2.x has None, Memcached and Redis)");
        std::string how;
        const CgNode* expire = m == "None" ? nullptr : b.option("expire");
        if (expire) {
            bool own = false;
            for (const auto& c : out.children) own = own || c.name == "session_expire";
            if (own) {
                how = "; its expire (" + expire->where() + ") is overridden by session_expire";
            } else {
                out.children.push_back(scalar("session_expire", expire->value, expire->file, expire->line));
                how = "; its expire is used as session_expire";
            }
        }
        warn(b.where() + ": <SessionCache> (module " + m +
             ") is not needed: sessions are always kept in the memory of each worker (mtpolicyd.conf(5), "
             "Sessions)" + how);
    }

    ConfNode mapVirtualHost(const CgNode& b) {
        if (!b.named) throw ConfigError(b.where() + ": <VirtualHost> needs a port: <VirtualHost 12345>");
        std::string context = "<VirtualHost " + b.name + ">: ";
        ConfNode v;
        v.kind = ConfNode::Kind::Group;
        v.file = b.file;
        v.line = b.line;
        ConfNode plugins;
        plugins.kind = ConfNode::Kind::List;
        plugins.name = "plugins";
        for (const auto& c : b.children) {
            if (!c.block) {
                needValue(c, context);
                if (c.key == "port" || c.key == "plugins")
                    throw ConfigError(c.where() + ": " + context + "key '" + c.key + "' is not a mtpolicyd 2.x key (" +
                                      (c.key == "port" ? "the port is the name of the block"
                                                       : "plugins are <Plugin NAME> blocks") +
                                      ")");
                v.children.push_back(scalar(c));
            } else if (c.key == "Plugin") {
                if (plugins.line == 0) {
                    plugins.file = c.file;
                    plugins.line = c.line;
                }
                plugins.children.push_back(mapPlugin(c));
            } else {
                throw ConfigError(c.where() + ": block " + c.tag() + " is not allowed inside " + b.tag() +
                                  blockTypeHint(c.key));
            }
        }
        if (plugins.children.empty())
            throw ConfigError(b.where() + ": no <Plugin> defined for <VirtualHost> on port " + b.name);
        v.children.push_back(scalar("port", b.name, b.file, b.line));
        v.children.push_back(std::move(plugins));
        return v;
    }

    ConfNode mapPlugin(const CgNode& b) {
        if (!b.named) throw ConfigError(b.where() + ": <Plugin> needs a name: <Plugin NAME>");
        std::string context = "plugin '" + b.name + "': ";
        ConfNode p;
        p.kind = ConfNode::Kind::Group;
        p.file = b.file;
        p.line = b.line;
        // mtpolicyd passes name => NAME before the block's keys, so a `name` key wins.
        const CgNode* nameKey = b.option("name");
        if (!nameKey) p.children.push_back(scalar("name", b.name, b.file, b.line));
        const CgNode* module = b.option("module");
        if (!module) throw ConfigError(b.where() + ": " + b.tag() + ": no module defined for plugin " + b.name);
        if (!module->hasValue) needValue(*module, context);
        const PluginSpec* spec = findPluginSpec(module->value);
        if (!spec) {
            bool perl = false;
            std::string otherCase;  // mtpolicyd's own POD has module = "action"; Perl failed on it too
            for (const char* m : kPerlModules) {
                perl = perl || module->value == m;
                if (module->value != m && toLower(module->value) == toLower(m)) otherCase = m;
            }
            std::string known;
            for (const auto& s : pluginSpecs()) known += (known.empty() ? "" : ", ") + s.module;
            throw ConfigError(module->where() + ": " + context + "key 'module': " +
                              (perl ? "the mtpolicyd 2.x module '" + module->value +
                                          "' is not implemented by this version"
                                    : "unknown plugin module '" + module->value + "'") +
                              " (" +
                              (otherCase.empty() ? ""
                                                 : "module names are case-sensitive: '" + otherCase + "'" +
                                                       (findPluginSpec(otherCase) ? "" : ", not implemented yet") + "; ") +
                              "available: " + known + ")");
        }
        ConfNode nested;
        nested.kind = ConfNode::Kind::List;
        nested.name = "plugins";
        for (const auto& c : b.children) {
            if (!c.block) {
                needValue(c, context);
                if (c.key == "plugins")
                    throw ConfigError(c.where() + ": " + context +
                                      "key 'plugins' is not a mtpolicyd 2.x key (nested plugins are <Plugin NAME> blocks)");
                if ((c.key == "db" || c.key == "memcached" || c.key == "redis" || c.key == "ldap") &&
                    dropped_.count(c.value))
                    throw ConfigError(c.where() + ": " + context + "key '" + c.key + "': connection '" + c.value +
                                      "' is a " + dropped_[c.value] +
                                      " connection, which this implementation does not provide");
                p.children.push_back(scalar(c));
            } else if (c.key == "Plugin") {
                if (!spec->nested) {
                    std::string chains;
                    for (const auto& s : pluginSpecs())
                        if (s.nested) chains += (chains.empty() ? "" : ", ") + s.module;
                    throw ConfigError(c.where() + ": " + context + "block " + c.tag() + ": module " + spec->module +
                                      " takes no nested plugins (" + chains + " do)");
                }
                if (nested.line == 0) {
                    nested.file = c.file;
                    nested.line = c.line;
                }
                nested.children.push_back(mapPlugin(c));
            } else {
                throw ConfigError(c.where() + ": " + context + "block " + c.tag() + " is not supported" +
                                  blockTypeHint(c.key));
            }
        }
        if (!nested.children.empty()) p.children.push_back(std::move(nested));
        return p;
    }

    std::vector<std::string>* warnings_;
    std::map<std::string, std::string> dropped_;  // connection name -> module
    std::vector<const CgNode*> oldKeys_;          // mtpolicyd 1.x keys, dropped
};

ConfNode readLegacy(LineReader& reader, const std::string& file, std::vector<std::string>* warnings) {
    CgNode root = parseBlocks(reader.lines, file);
    return Mapper(warnings).map(root, file);
}

// --- libconfig output --------------------------------------------------------------------------

std::string libconfigString(const std::string& v) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (unsigned char c : v) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    out += "\\x";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out + "\"";
}

// An integer libconfig reads back as the same int: no sign but '-', no leading zeros, 32 bits.
bool plainInteger(const std::string& v) {
    size_t i = v.size() > 1 && v[0] == '-' ? 1 : 0;
    if (i >= v.size() || v.size() - i > 9) return false;
    if (v[i] == '0' && v.size() - i > 1) return false;
    for (size_t k = i; k < v.size(); ++k)
        if (v[k] < '0' || v[k] > '9') return false;
    return true;
}

// A decimal libconfig reads back as the same double: d+.d+ with at most 15 digits.
bool plainDecimal(const std::string& v) {
    size_t dot = v.find('.');
    if (dot == std::string::npos) return false;
    std::string ip = v.substr(0, dot), fp = v.substr(dot + 1);
    if (ip != "0" && ip != "-0" && !plainInteger(ip)) return false;
    if (fp.empty() || v.size() > 16) return false;
    for (char c : fp)
        if (c < '0' || c > '9') return false;
    return true;
}

std::string literal(const std::string& value, const SettingSpec* spec) {
    SettingType type = spec ? spec->type : SettingType::String;
    switch (type) {
        case SettingType::Integer:
            if (plainInteger(value)) return value;
            break;
        case SettingType::Number:
            if (plainInteger(value) || plainDecimal(value)) return value;
            break;
        case SettingType::Boolean: {
            bool b;
            if (parseBoolean(value, b)) return b ? "true" : "false";
            break;
        }
        case SettingType::List: {
            std::vector<std::string> items = splitList(value);
            if (items.empty()) break;
            std::string out = "[ ";
            for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + libconfigString(items[i]);
            return out + " ]";
        }
        case SettingType::String:
            break;
    }
    return libconfigString(value);
}

bool libconfigName(const std::string& n) {
    if (n.empty() || !std::isalpha(static_cast<unsigned char>(n[0]))) return false;
    for (unsigned char c : n)
        if (!std::isalnum(c) && c != '-' && c != '_') return false;
    return true;
}

const SettingSpec* findSpec(const std::vector<const SettingTable*>& tables, const std::string& key) {
    for (const auto* t : tables)
        for (const auto& s : *t)
            if (s.name == key) return &s;
    return nullptr;  // uc_<key>: the name of a session variable, a string
}

std::string comment(const std::string& s) {
    std::string out;
    for (char c : s) out += (c == '\n' || c == '\r') ? ' ' : c;
    return out;
}

class NativeWriter {
public:
    explicit NativeWriter(std::ostream& os) : os_(os) {}

    void settings(const ConfNode& group, const std::vector<const SettingTable*>& tables, const std::string& pad) {
        for (const auto& n : group.children) {
            if (n.kind != ConfNode::Kind::Scalar) continue;
            if (!libconfigName(n.name))
                throw ConfigError(n.where() + ": key '" + n.name + "' cannot be written in the native format");
            os_ << pad << n.name << " = " << literal(n.value, findSpec(tables, n.name)) << ";\n";
        }
    }

    void plugins(const ConfNode& list, const std::string& pad) {
        for (size_t i = 0; i < list.children.size(); ++i) {
            const ConfNode& p = list.children[i];
            const ConfNode* name = p.child("name");
            const ConfNode* module = p.child("module");
            const PluginSpec* spec = module ? findPluginSpec(module->value) : nullptr;
            os_ << pad << "# <Plugin " << comment(name ? name->value : "?") << "> at " << p.where() << "\n";
            os_ << pad << "{\n";
            std::vector<const SettingTable*> tables{&commonPluginSettings()};
            if (spec) tables.push_back(&spec->settings);
            settings(p, tables, pad + "  ");
            if (const ConfNode* nested = p.child("plugins")) {
                os_ << pad << "  plugins = (\n";
                plugins(*nested, pad + "    ");
                os_ << pad << "  );\n";
            }
            os_ << pad << "}" << (i + 1 < list.children.size() ? "," : "") << "\n";
        }
    }

private:
    std::ostream& os_;
};

std::string dumpOf(const Config& c) {
    std::ostringstream os;
    c.dump(os);
    return os.str();
}

}  // namespace

// --- public interface --------------------------------------------------------------------------

ConfNode readLegacyFile(const std::string& path, std::vector<std::string>* warnings) {
    LineReader reader(warnings);
    reader.readFile(path, "", 0);
    return readLegacy(reader, path, warnings);
}

ConfNode readLegacyString(const std::string& text, const std::string& name, std::vector<std::string>* warnings) {
    LineReader reader(warnings);
    reader.readText(text, name, 0, "");
    return readLegacy(reader, name, warnings);
}

bool looksLikeLegacyConfig(const std::string& text) {
    bool keyValue = false, inComment = false;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string s = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? text.size() : nl + 1;
        if (inComment) {
            size_t e = s.find("*/");
            if (e == std::string::npos) continue;
            s = s.substr(e + 2);
            inComment = false;
        }
        // Remove comments of both formats: #, // and /* */ (outside double quotes).
        for (;;) {
            Spans spans = quoteSpans(s);
            size_t cut = findHash(s, spans);
            size_t slashes = findOutside(s, "//", spans);
            size_t open = findOutside(s, "/*", spans);
            size_t first = std::min(cut, std::min(slashes, open));
            if (first == std::string::npos) break;
            if (first == open) {
                size_t close = s.find("*/", open + 2);
                if (close == std::string::npos) {
                    s.resize(open);
                    inComment = true;
                    break;
                }
                s = s.substr(0, open) + " " + s.substr(close + 2);
                continue;
            }
            s.resize(first);
            break;
        }
        std::string t = trimAll(s);
        if (t.empty()) continue;
        if (t[0] == '<') return true;  // <Block ...>, </Block>, <<include ...>>
        if (t.compare(0, 8, "@include") == 0) return false;
        if (std::string("{}()[]").find(t[0]) != std::string::npos) return false;
        if (std::string(";,{}()[]").find(t.back()) != std::string::npos) return false;
        if (std::isalpha(static_cast<unsigned char>(t[0])) || t[0] == '_') keyValue = true;
    }
    return keyValue;
}

std::string formatNativeConfig(const ConfNode& root, const std::string& file, const std::vector<std::string>& warnings) {
    std::unique_ptr<Config> cfg = Config::fromTree(root, file);  // validates everything first
    std::ostringstream os;
    NativeWriter w(os);
    os << "# mtpolicyd.conf(5), converted from the mtpolicyd 2.x configuration\n"
       << "# " << comment(file) << " by mtpolicyd --convert-config.\n";
    for (const auto& note : warnings) os << "# note: " << comment(note) << "\n";
    os << "\n";
    w.settings(root, {&globalSettings()}, "");
    if (const ConfNode* conns = root.child("connections")) {
        os << "\nconnections = {\n";
        for (const auto& c : conns->children) {
            if (!libconfigName(c.name))
                throw ConfigError(c.where() + ": connection name '" + c.name +
                                  "' cannot be written in the native format (letters, digits, '-' and '_', "
                                  "starting with a letter); rename it");
            const ConfNode* module = c.child("module");
            const SettingTable* table = module ? connectionSettings(module->value) : nullptr;
            os << "  # <Connection " << c.name << "> at " << c.where() << "\n";
            os << "  " << c.name << " = {\n";
            std::vector<const SettingTable*> tables;
            if (table) tables.push_back(table);
            w.settings(c, tables, "    ");
            os << "  };\n";
        }
        os << "};\n";
    }
    const ConfNode* vhosts = root.child("virtual_hosts");
    os << "\nvirtual_hosts = (\n";
    for (size_t i = 0; vhosts && i < vhosts->children.size(); ++i) {
        const ConfNode& v = vhosts->children[i];
        const ConfNode* port = v.child("port");
        os << "  # <VirtualHost " << comment(port ? port->value : "?") << "> at " << v.where() << "\n";
        os << "  {\n";
        w.settings(v, {&virtualHostSettings()}, "    ");
        if (const ConfNode* plugins = v.child("plugins")) {
            os << "    plugins = (\n";
            w.plugins(*plugins, "      ");
            os << "    );\n";
        }
        os << "  }" << (i + 1 < vhosts->children.size() ? "," : "") << "\n";
    }
    os << ");\n";
    std::string text = os.str();

    // The promise of --convert-config: the text loads to the same configuration.
    std::unique_ptr<Config> again;
    try {
        again = Config::fromTree(readLibconfigString(text, file), file);
    } catch (const ConfigError& e) {
        throw ConfigError(file + ": internal error: the converted configuration does not load: " + e.what());
    }
    if (dumpOf(*cfg) != dumpOf(*again))
        throw ConfigError(file + ": internal error: the converted configuration differs from the original");
    return text;
}

std::string convertLegacyConfig(const std::string& path, std::vector<std::string>* warnings) {
    std::string text, why;
    if (!readWholeFile(path, text, why)) throw ConfigError(path + ": cannot read configuration file (" + why + ")");
    if (!looksLikeLegacyConfig(text))
        throw ConfigError(path + ": already in the native libconfig format (see mtpolicyd.conf(5)); nothing to convert");
    std::vector<std::string> w;
    ConfNode root = readLegacyFile(path, &w);
    std::string out = formatNativeConfig(root, path, w);
    if (warnings) *warnings = w;
    return out;
}

}  // namespace mtp
