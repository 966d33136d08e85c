// Condition: tests a request attribute or session variable (equality, regex, numeric < and >,
// OR'ed in that order, optionally inverted); on a match adds a score, then returns an action
// or runs its nested chain. An undefined value never matches, inverted or not (mtpolicyd).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <regex>
#include <string>

#include "mtpolicyd/plugins/Plugins.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace plugins {
namespace {

// Perl's numification: the leading numeric part, 0 when there is none.
double numify(const std::string& s) { return std::strtod(s.c_str(), nullptr); }

// Patterns std::regex (libstdc++) cannot be trusted to compile: its compiler recurses once per
// term, so a very long pattern overflows the stack (about 100,000 characters at -O2, less under
// the sanitizers), and it reads the number of a {n,m} repetition or a \N back-reference into
// a long without checking for overflow (undefined behaviour from 19 digits). Both found by
// tests/fuzz (fuzz_config). Returns an error text, or "".
constexpr size_t kMaxRegexLength = 4096;
constexpr size_t kMaxRegexNumberDigits = 6;
std::string checkRegexLimits(const std::string& re) {
    if (re.size() > kMaxRegexLength)
        return "regular expression too long (" + std::to_string(re.size()) + " characters, at most " +
               std::to_string(kMaxRegexLength) + ")";
    auto digitsAt = [&](size_t i) {
        size_t n = 0;
        while (i + n < re.size() && std::isdigit(static_cast<unsigned char>(re[i + n]))) ++n;
        return n;
    };
    for (size_t i = 0; i < re.size(); ++i) {
        size_t n = 0;
        if (re[i] == '\\') {  // \N back-reference
            n = digitsAt(i + 1);
            ++i;
        } else if (re[i] == '{') {  // {n}, {n,} or {n,m}
            n = digitsAt(i + 1);
            if (i + 1 + n < re.size() && re[i + 1 + n] == ',') n = std::max(n, digitsAt(i + 2 + n));
        }
        if (n > kMaxRegexNumberDigits)
            return "repetition count or back-reference number too large (more than " +
                   std::to_string(kMaxRegexNumberDigits) + " digits)";
    }
    return "";
}

class Condition : public Plugin {
public:
    explicit Condition(PluginContext& ctx)
        : Plugin(ctx),
          key_(ctx.opts.str("key")),
          hasMatch_(ctx.opts.isSet("match")),
          match_(ctx.opts.str("match")),
          hasRe_(ctx.opts.isSet("re_match")),
          hasLt_(ctx.opts.isSet("lt_match")),
          lt_(ctx.opts.number("lt_match")),
          hasGt_(ctx.opts.isSet("gt_match")),
          gt_(ctx.opts.number("gt_match")),
          invert_(ctx.opts.boolean("invert")),
          score_(ctx.opts, "score"),
          action_(ctx.opts, "action"),
          scoreField_(ctx.opts.str("score_field")) {
        std::string err = Request::checkScopedKey(key_);
        if (!err.empty()) throw ConfigError(ctx.opts.whereOf("key") + ": plugin '" + name_ + "': key 'key': " + err);
        if (hasRe_) {
            std::string limitErr = checkRegexLimits(ctx.opts.str("re_match"));
            if (!limitErr.empty())
                throw ConfigError(ctx.opts.whereOf("re_match") + ": plugin '" + name_ + "': key 're_match': " + limitErr);
            try {
                re_ = std::regex(ctx.opts.str("re_match"), std::regex::ECMAScript | std::regex::optimize);
            } catch (const std::regex_error& e) {
                throw ConfigError(ctx.opts.whereOf("re_match") + ": plugin '" + name_ +
                                  "': key 're_match': invalid regular expression: " + e.what());
            }
        }
    }

    void run(Request& r) override {
        const std::string* value = r.lookup(key_);
        if (!value) return;
        bool matched = matches(*value);
        if (invert_) matched = !matched;
        if (!matched) return;
        log(r, key_ + " matched " + *value);
        if (score_.defined(r)) r.sess().addScore(scoreField_, name_, score_.get(r));
        if (action_.defined(r)) {
            r.result.addAction(name_, action_.get(r));
            return;
        }
        runNested(r);
    }

private:
    bool matches(const std::string& v) const {
        if (hasMatch_ && v == match_) return true;
        if (hasRe_ && std::regex_search(v, re_)) return true;
        if (hasLt_ && numify(v) < lt_) return true;
        if (hasGt_ && numify(v) > gt_) return true;
        return false;
    }

    std::string key_;
    bool hasMatch_;
    std::string match_;
    bool hasRe_;
    std::regex re_;
    bool hasLt_;
    double lt_;
    bool hasGt_;
    double gt_;
    bool invert_;
    UcNumber score_;
    UcString action_;
    std::string scoreField_;
};

}  // namespace

PluginSpec conditionSpec() {
    using T = SettingType;
    return {"Condition",
            "Match a request attribute or session variable; add a score, return an action or run "
            "nested plugins.",
            {required("key", T::String,
                      "What to test: an attribute name, \"request:NAME\" or \"session:NAME\"."),
             optional("match", T::String, "Matches when the value equals this string."),
             optional("re_match", T::String, "Matches when this regular expression (ECMAScript syntax) is found."),
             optional("lt_match", T::Number, "Matches when the value is numerically lower."),
             optional("gt_match", T::Number, "Matches when the value is numerically greater."),
             withDefault("invert", T::Boolean, "0", "Invert the result of the match."),
             overridable(optional("score", T::Number, "Score to add on a match (every time it matches).")),
             overridable(optional("action", T::String, "Action to return on a match.")),
             withDefault("score_field", T::String, "score", "Session variable that holds the score.")},
            true,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new Condition(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
