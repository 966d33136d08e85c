// AddScoreHeader: once per message, prepends "<header_name>: YES|NO score=N [detail]";
// later requests of the same message get "dunno". It always stops the chain (mtpolicyd).
#include "mtpolicyd/plugins/Plugins.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace plugins {
namespace {

class AddScoreHeader : public Plugin {
public:
    explicit AddScoreHeader(PluginContext& ctx)
        : Plugin(ctx),
          header_(ctx.opts.str("header_name")),
          spamScore_(ctx.opts, "spam_score"),
          scoreField_(ctx.opts.str("score_field")),
          doneKey_("score-" + scoreField_ + "-tag") {}

    void run(Request& r) override {
        Session& s = r.sess();
        if (s.isAlreadyDone(doneKey_)) {
            r.result.addAction(name_, "dunno");
            return;
        }
        double score = s.score(scoreField_);
        std::string value = score >= spamScore_.get(r) ? "YES " : "NO ";
        value += "score=" + formatNumber(score);
        const std::string* detail = s.get(scoreField_ + "_detail");
        if (detail && !detail->empty()) value += " [" + *detail + "]";
        r.result.addAction(name_, "PREPEND " + header_ + ": " + value);
    }

private:
    std::string header_;
    UcNumber spamScore_;
    std::string scoreField_;
    std::string doneKey_;
};

}  // namespace

PluginSpec addScoreHeaderSpec() {
    using T = SettingType;
    return {"AddScoreHeader",
            "Prepend a header with the score, once per message.",
            {withDefault("header_name", T::String, "X-MtScore", "Name of the header."),
             overridable(withDefault("spam_score", T::Number, "5", "From this score on the header says YES.")),
             withDefault("score_field", T::String, "score", "Session variable that holds the score.")},
            false,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new AddScoreHeader(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
