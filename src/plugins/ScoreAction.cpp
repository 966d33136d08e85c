// ScoreAction: acts when the session score reaches a threshold: returns an action with
// %IP%, %SCORE% and %SCORE_DETAIL% filled in (each once, as mtpolicyd does) or runs its
// nested chain.
#include "mtpolicyd/plugins/Plugins.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {
namespace plugins {
namespace {

class ScoreAction : public Plugin {
public:
    explicit ScoreAction(PluginContext& ctx)
        : Plugin(ctx),
          threshold_(ctx.opts, "threshold"),
          lessThan_(ctx.opts.str("match") == "lt"),
          hasAction_(ctx.opts.isSet("action")),
          action_(ctx.opts.str("action")),
          scoreField_(ctx.opts.str("score_field")) {
        const std::string& m = ctx.opts.str("match");
        if (m != "gt" && m != "lt")
            throw ConfigError(ctx.opts.whereOf("match") + ": plugin '" + name_ +
                              "': key 'match': expected \"gt\" or \"lt\", got \"" + m + "\"");
    }

    void run(Request& r) override {
        double score = r.sess().score(scoreField_);
        double threshold = threshold_.get(r);
        if (lessThan_ ? score > threshold : score < threshold) return;
        if (hasAction_) {
            std::string a = action_;
            const std::string* ip = r.attr("client_address");
            replaceFirst(a, "%IP%", ip ? *ip : "unknown");
            replaceFirst(a, "%SCORE%", formatNumber(score));
            const std::string* detail = r.sess().get(scoreField_ + "_detail");
            replaceFirst(a, "%SCORE_DETAIL%", detail ? ", " + *detail : "");
            r.result.addAction(name_, a);
            return;
        }
        runNested(r);
    }

private:
    UcNumber threshold_;
    bool lessThan_;
    bool hasAction_;
    std::string action_;
    std::string scoreField_;
};

}  // namespace

PluginSpec scoreActionSpec() {
    using T = SettingType;
    return {"ScoreAction",
            "Return an action or run nested plugins when the score reaches a threshold.",
            {overridable(required("threshold", T::Number, "The score threshold.")),
             withDefault("match", T::String, "gt",
                         "\"gt\": act when score >= threshold; \"lt\": act when score <= threshold."),
             optional("action", T::String,
                      "Action to return; %IP%, %SCORE% and %SCORE_DETAIL% are replaced (first occurrence)."),
             withDefault("score_field", T::String, "score", "Session variable that holds the score.")},
            true,
            [](PluginContext& ctx) { return std::unique_ptr<Plugin>(new ScoreAction(ctx)); }};
}

}  // namespace plugins
}  // namespace mtp
