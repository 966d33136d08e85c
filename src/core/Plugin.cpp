// Plugin base class, uc_ overrides and the chain runner.
#include "mtpolicyd/core/Plugin.h"

#include "mtpolicyd/core/VirtualHost.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {

Plugin::Plugin(PluginContext& ctx)
    : options_(ctx.opts),
      name_(ctx.name),
      module_(ctx.module),
      continueOnError_(ctx.opts.str("on_error") == "continue"),
      logLevel_(static_cast<int>(ctx.opts.integer("log_level"))),
      nested_(std::move(ctx.nested)) {}

Plugin::~Plugin() = default;

void Plugin::start() {
    if (nested_) nested_->start();
}

void Plugin::cron(const std::vector<std::string>& tasks) {
    if (nested_) nested_->cron(tasks);
}

void Plugin::log(const Request& r, const std::string& msg) const {
    if (!log::enabled(logLevel_)) return;
    const char* vh = r.vhost ? r.vhost->name.c_str() : "-";
    log::write(logLevel_, "%s: %s: %s", vh, name_.c_str(), msg.c_str());
}

void Plugin::runNested(Request& r) const {
    if (nested_) nested_->run(r);
}

UcString::UcString(const Options& o, const std::string& name)
    : value_(o.str(name)), ucKey_(o.ucKey(name)), set_(o.has(name)) {}

const std::string& UcString::get(const Request& r) const {
    if (!ucKey_.empty() && r.session) {
        const std::string* v = r.session->get(ucKey_);
        if (v) return *v;
    }
    return value_;
}

bool UcString::defined(const Request& r) const {
    return set_ || (!ucKey_.empty() && r.session && r.session->get(ucKey_));
}

bool UcNumber::defined(const Request& r) const {
    double d;
    const std::string* v = (!ucKey_.empty() && r.session) ? r.session->get(ucKey_) : nullptr;
    return set_ || (v && parseNumber(*v, d));
}

UcNumber::UcNumber(const Options& o, const std::string& name)
    : value_(o.number(name)), ucKey_(o.ucKey(name)), set_(o.has(name)) {}

double UcNumber::get(const Request& r) const {
    if (!ucKey_.empty() && r.session) {
        const std::string* v = r.session->get(ucKey_);
        double d;
        if (v && parseNumber(*v, d)) return d;
    }
    return value_;
}

UcEnabled::UcEnabled(const Options& o, const std::string& name)
    : value_(o.has(name) ? o.boolean(name) : true), ucKey_(o.ucKey(name)) {}

bool UcEnabled::get(const Request& r) const {
    if (!ucKey_.empty() && r.session) {
        if (const std::string* v = r.session->get(ucKey_)) {
            std::string t = toLower(trim(*v));
            return !(t == "off" || t == "0" || t == "false" || t == "no");
        }
    }
    return value_;
}

void Chain::run(Request& r) const {
    for (const auto& p : plugins) {
        try {
            p->run(r);
        } catch (const PluginError& e) {
            // A nested plugin failed; its message already names it.
            if (!p->continueOnError()) throw;
            MTP_LOG(e.databaseDown() ? log::Info : log::Err, "plugin %s failed: %s", p->name().c_str(), e.what());
        } catch (const std::exception& e) {
            bool down = dynamic_cast<const DbUnavailable*>(&e) != nullptr;
            if (!p->continueOnError())
                throw PluginError("plugin " + p->name() + " failed: " + e.what(), down);
            MTP_LOG(down ? log::Info : log::Err, "plugin %s failed: %s", p->name().c_str(), e.what());
        }
        if (r.result.abort) return;
    }
}

void Chain::start() {
    for (auto& p : plugins) p->start();
}

void Chain::cron(const std::vector<std::string>& tasks) {
    for (auto& p : plugins) {
        try {
            p->cron(tasks);
        } catch (const std::exception& e) {
            MTP_LOG(log::Err, "plugin %s failed in cron: %s", p->name().c_str(), e.what());
        }
    }
}

}  // namespace mtp
