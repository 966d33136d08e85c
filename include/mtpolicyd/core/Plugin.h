// The plugin interface and the chain that runs plugins in order.
//
// Life of a plugin: constructed from its validated options in the master (no I/O, so that
// `mtpolicyd -t` and a reload can check it), start() once in each worker after fork (open
// handles), run() per request, cron() from `mtpolicyd --cron`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mtpolicyd/core/Request.h"
#include "mtpolicyd/core/Settings.h"

namespace mtp {

class Chain;
class Config;

// What a plugin factory gets: its options, its nested chain (when the module takes one) and
// the whole configuration (for named connections).
struct PluginContext {
    const Options& opts;
    std::string name;
    std::string module;
    std::unique_ptr<Chain> nested;  // null when no `plugins` were given
    const Config* config = nullptr;
};

class Plugin {
public:
    explicit Plugin(PluginContext& ctx);  // takes ctx.nested
    virtual ~Plugin();
    Plugin(const Plugin&) = delete;
    Plugin& operator=(const Plugin&) = delete;

    virtual void start();
    // Appends actions to r.result; sets r.result.abort to stop the chain. Throws on failure.
    virtual void run(Request& r) = 0;
    virtual void cron(const std::vector<std::string>& tasks);

    const std::string& name() const { return name_; }
    const std::string& module() const { return module_; }
    bool continueOnError() const { return continueOnError_; }
    const Options& options() const { return options_; }
    const Chain* nestedChain() const { return nested_.get(); }

protected:
    // The plugin's own messages, at its configured log_level, prefixed "<vhost>: <name>: ".
    void log(const Request& r, const std::string& msg) const;
    // Runs the nested chain, if any.
    void runNested(Request& r) const;

    Options options_;  // as validated; kept for --dump-config
    std::string name_;
    std::string module_;
    bool continueOnError_ = false;
    int logLevel_ = 4;
    std::unique_ptr<Chain> nested_;
};

// A string option that a session variable may override (mtpolicyd's uc_<option>).
class UcString {
public:
    UcString() = default;
    UcString(const Options& o, const std::string& name);
    const std::string& get(const Request& r) const;
    // Configured, or overridden by a session variable that is defined for this request.
    bool defined(const Request& r) const;

private:
    std::string value_;
    std::string ucKey_;
    bool set_ = false;
};

// A numeric option that a session variable may override. A session value that is not a
// number is ignored (the configured value applies).
class UcNumber {
public:
    UcNumber() = default;
    UcNumber(const Options& o, const std::string& name);
    double get(const Request& r) const;
    bool defined(const Request& r) const;

private:
    double value_ = 0;
    std::string ucKey_;
    bool set_ = false;
};

// The `enabled` option of mtpolicyd plugins: a boolean in the configuration; uc_enabled may
// name a session variable whose value "off" (also "0", "false", "no") disables the plugin.
class UcEnabled {
public:
    UcEnabled() = default;
    UcEnabled(const Options& o, const std::string& name = "enabled");
    bool get(const Request& r) const;

private:
    bool value_ = true;
    std::string ucKey_;
};

class Chain {
public:
    std::vector<std::unique_ptr<Plugin>> plugins;

    // Runs the plugins in order until one aborts. A plugin that throws fails the request
    // (PluginError) unless it has on_error = "continue", in which case the error is logged.
    void run(Request& r) const;
    void start();
    void cron(const std::vector<std::string>& tasks);
};

}  // namespace mtp
