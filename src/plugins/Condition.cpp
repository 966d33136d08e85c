// Condition: tests a request attribute or session variable (equality, regex, numeric < and >,
// OR'ed in that order, optionally inverted); on a match adds a score, then returns an action
// or runs its nested chain. An undefined value never matches, inverted or not (mtpolicyd).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "mtpolicyd/plugins/Plugins.h"
#include "mtpolicyd/core/VirtualHost.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace plugins {
namespace {

// Perl's numification: the leading numeric part, 0 when there is none.
double numify(const std::string& s) { return std::strtod(s.c_str(), nullptr); }

// re_match is a PCRE2 (Perl-compatible) regular expression, compiled for 8-bit code units
// without UTF mode: a request value is matched as bytes, so a value with NUL bytes or invalid
// UTF-8 is an ordinary subject ((*UTF) in a pattern is refused with PCRE2_NEVER_UTF).
//
// Matching is bounded: a pattern that backtracks catastrophically (^(a|b)*$, (a+)+$) on a
// long value stops at a limit instead of overflowing the stack (std::regex, used before, recursed
// once per character of the value and crashed the worker at ~16,000 characters). A limit hit
// or any other matching error is "no match" with a warning. The limits cannot be raised from
// within a pattern ((*LIMIT_MATCH=...) only lowers them).
constexpr uint32_t kMatchLimit = 1000000;  // backtracking steps per match attempt
constexpr uint32_t kDepthLimit = 10000;    // nested backtracking points (interpreter)
constexpr uint32_t kHeapLimitKiB = 20000;  // interpreter backtracking memory (20 MB)
constexpr size_t kJitStackStart = 32 * 1024;
constexpr size_t kJitStackMax = 512 * 1024;
// The longest pattern accepted: a config error beyond it (fuzz_config found 100,000-character
// patterns that made libstdc++'s compiler overflow the stack; PCRE2 copes, but no sane
// re_match is that long and the cap keeps the compiled pattern and its JIT code small).
constexpr size_t kMaxRegexLength = 4096;
// How much of a value a warning quotes.
constexpr size_t kLogValueChars = 100;

struct Pcre2CodeFree {
    void operator()(pcre2_code* p) const { pcre2_code_free(p); }
};
struct Pcre2MatchDataFree {
    void operator()(pcre2_match_data* p) const { pcre2_match_data_free(p); }
};
struct Pcre2MatchContextFree {
    void operator()(pcre2_match_context* p) const { pcre2_match_context_free(p); }
};
struct Pcre2JitStackFree {
    void operator()(pcre2_jit_stack* p) const { pcre2_jit_stack_free(p); }
};

std::string pcre2Message(int code) {
    PCRE2_UCHAR buf[256];
    int n = pcre2_get_error_message(code, buf, sizeof buf);
    if (n < 0) return "PCRE2 error " + std::to_string(code);
    return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// A compiled re_match with its match data and limits. Not copyable (it owns the PCRE2
// objects); used by one thread (a worker process runs one request at a time).
class Regex {
public:
    // Compiles `re`; returns an error text ("" on success).
    std::string compile(const std::string& re) {
        if (re.size() > kMaxRegexLength)
            return "regular expression too long (" + std::to_string(re.size()) + " characters, at most " +
                   std::to_string(kMaxRegexLength) + ")";
        int err = 0;
        PCRE2_SIZE offset = 0;
        code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(), PCRE2_NEVER_UTF, &err,
                                  &offset, nullptr));
        if (!code_)
            return "invalid regular expression: " + pcre2Message(err) + " at offset " + std::to_string(offset);
        matchData_.reset(pcre2_match_data_create(1, nullptr));  // only "matched or not" is used
        context_.reset(pcre2_match_context_create(nullptr));
        if (!matchData_ || !context_) throw std::bad_alloc();
        pcre2_set_match_limit(context_.get(), kMatchLimit);
        pcre2_set_depth_limit(context_.get(), kDepthLimit);
        pcre2_set_heap_limit(context_.get(), kHeapLimitKiB);
        // The JIT when this PCRE2 has one and it accepts the pattern; the interpreter otherwise.
        if (pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE) == 0) {
            jitStack_.reset(pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr));
            if (jitStack_) pcre2_jit_stack_assign(context_.get(), nullptr, jitStack_.get());
        }
        return "";
    }

    // pcre2_match's result: >= 0 a match, PCRE2_ERROR_NOMATCH, or another (negative) error.
    int search(const std::string& v) const {
        return pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(v.data()), v.size(), 0, 0, matchData_.get(),
                           context_.get());
    }

private:
    std::unique_ptr<pcre2_code, Pcre2CodeFree> code_;
    std::unique_ptr<pcre2_match_data, Pcre2MatchDataFree> matchData_;
    std::unique_ptr<pcre2_match_context, Pcre2MatchContextFree> context_;
    std::unique_ptr<pcre2_jit_stack, Pcre2JitStackFree> jitStack_;
};

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
            std::string reErr = re_.compile(ctx.opts.str("re_match"));
            if (!reErr.empty())
                throw ConfigError(ctx.opts.whereOf("re_match") + ": plugin '" + name_ + "': key 're_match': " + reErr);
        }
    }

    void run(Request& r) override {
        const std::string* value = r.lookup(key_);
        if (!value) return;
        bool matched = matches(r, *value);
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
    bool matches(const Request& r, const std::string& v) const {
        if (hasMatch_ && v == match_) return true;
        if (hasRe_ && reMatches(r, v)) return true;
        if (hasLt_ && numify(v) < lt_) return true;
        if (hasGt_ && numify(v) > gt_) return true;
        return false;
    }

    // A limit hit or another matching error is "no match", with a warning that quotes the
    // start of the value (a value may be as long as max_line_length).
    bool reMatches(const Request& r, const std::string& v) const {
        int rc = re_.search(v);
        if (rc >= 0) return true;
        if (rc != PCRE2_ERROR_NOMATCH && log::enabled(log::Warning)) {
            std::string quoted = log::escape(v.substr(0, kLogValueChars));
            if (v.size() > kLogValueChars) quoted += "...";
            MTP_LOG(log::Warning, "%s: %s: re_match on %s: %s (value of %zu bytes \"%s\"): treated as no match",
                    r.vhost ? r.vhost->name.c_str() : "-", name_.c_str(), key_.c_str(), pcre2Message(rc).c_str(),
                    v.size(), quoted.c_str());
        }
        return false;
    }

    std::string key_;
    bool hasMatch_;
    std::string match_;
    bool hasRe_;
    Regex re_;
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
             optional("re_match", T::String, "Matches when this regular expression (PCRE2, Perl syntax) is found."),
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
