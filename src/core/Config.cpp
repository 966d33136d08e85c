// Loading, validating and printing the daemon configuration.
#include "mtpolicyd/core/Config.h"

#include <grp.h>
#include <pwd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "mtpolicyd/core/Registry.h"
#include "mtpolicyd/util/Errors.h"
#include "mtpolicyd/util/Log.h"
#include "mtpolicyd/util/Strings.h"

namespace mtp {

const SettingTable& globalSettings() {
    using T = SettingType;
    static const SettingTable t = {
        optional("user", T::String, "User to run as after the ports are bound (needs root to start)."),
        optional("group", T::String, "Group to run as after the ports are bound (default: the user's group)."),
        optional("pid_file", T::String, "Write the master's pid to this file; removed at exit."),
        ranged(withDefault("log_level", T::Integer, "2",
                           "0 err, 1 warning (one line per request), 2 notice, 3 info, 4 debug."),
               0, 4),
        optional("log_file", T::String, "Append log lines to this file instead of syslog."),
        withDefault("syslog_ident", T::String, "mtpolicyd", "Syslog identity."),
        withDefault("syslog_facility", T::String, "mail", "Syslog facility."),
        withDefault("host", T::String, "127.0.0.1", "Address for entries of `port` given without a host."),
        withDefault("port", T::List, "127.0.0.1:12345",
                    "Where to listen: a list (or comma-separated string) of host:port, [v6addr]:port, "
                    "port, or a unix socket path."),
        ranged(withDefault("min_servers", T::Integer, "4", "Workers started at least."), 1, 1024),
        ranged(withDefault("min_spare_servers", T::Integer, "4", "Idle workers kept at least."), 0, 1024),
        ranged(withDefault("max_spare_servers", T::Integer, "12", "Idle workers kept at most."), 1, 1024),
        ranged(withDefault("max_servers", T::Integer, "25", "Workers started at most."), 1, 1024),
        ranged(withDefault("max_requests", T::Integer, "1000",
                           "A worker is recycled after accepting this many connections (0: never)."),
               0, 1LL << 40),
        ranged(withDefault("request_timeout", T::Integer, "20",
                           "Seconds from the first byte of a request to its answer; then the "
                           "connection is closed without a reply."),
               1, 86400),
        ranged(withDefault("keepalive_timeout", T::Integer, "330",
                           "Seconds an idle connection is kept waiting for its next request (0: "
                           "forever). Above Postfix's smtpd_policy_service_max_idle (300 s)."),
               0, 86400),
        ranged(withDefault("max_keepalive", T::Integer, "0",
                           "Requests per connection before the server closes it (0: unlimited)."),
               0, 1LL << 40),
        withDefault("vhost_by_policy_context", T::Boolean, "0",
                    "Choose the virtual host whose name equals the request's policy_context."),
        ranged(withDefault("session_expire", T::Integer, "300",
                           "Seconds a per-message session (keyed by instance) is kept after its "
                           "last request."),
               1, 86400),
        ranged(withDefault("session_max_entries", T::Integer, "20000",
                           "Sessions a worker keeps at most; the least recently used go first."),
               1, 10000000),
        ranged(withDefault("max_line_length", T::Integer, "16384",
                           "Longest request line in bytes; a longer one closes the connection."),
               64, 16 << 20),
        ranged(withDefault("max_attributes", T::Integer, "1024",
                           "Most attributes in one request; more close the connection."),
               8, 1000000),
        ranged(withDefault("max_request_size", T::Integer, "131072",
                           "Largest request in bytes; a larger one closes the connection."),
               256, 64 << 20),
    };
    return t;
}

const SettingTable& virtualHostSettings() {
    static const SettingTable t = {
        required("name", SettingType::String, "Name of the virtual host (logs, policy_context)."),
        required("port", SettingType::String,
                 "The port (e.g. \"12345\") or unix socket path whose connections this chain serves."),
    };
    return t;
}

const SettingTable* connectionSettings(const std::string& module) {
    using T = SettingType;
    static const SettingTable sql = {
        required("module", T::String, "Connection type: \"Sql\"."),
        required("dsn", T::String,
                 "DBI data source: dbi:mysql:database=NAME;host=HOST;port=PORT, "
                 "dbi:mysql:...;mysql_socket=PATH or dbi:SQLite:dbname=PATH."),
        withDefault("user", T::String, "", "Database user."),
        secret(withDefault("password", T::String, "", "Database password (never logged or printed).")),
        ranged(withDefault("connect_timeout", T::Integer, "5", "Seconds to wait for a connection."), 1, 3600),
        ranged(withDefault("read_timeout", T::Integer, "10", "Seconds to wait for a query result."), 1, 3600),
        ranged(withDefault("write_timeout", T::Integer, "10", "Seconds to wait when sending a query."), 1, 3600),
    };
    if (module == "Sql") return &sql;
    return nullptr;
}

std::string ListenSpec::parse(const std::string& textIn, const std::string& defaultHost, ListenSpec& out) {
    std::string text = trim(textIn);
    out = ListenSpec();
    out.text = text;
    if (text.empty()) return "empty listen address";
    std::string t = text;
    bool unixSuffix = false;
    if (t.size() > 5 && t.compare(t.size() - 5, 5, "|unix") == 0) {
        t = t.substr(0, t.size() - 5);
        unixSuffix = true;
    }
    if (t[0] == '/' || unixSuffix) {
        if (t.empty() || t[0] != '/') return "unix socket path must be absolute: '" + text + "'";
        if (t.size() >= 108) return "unix socket path too long: '" + text + "'";
        out.kind = Kind::Unix;
        out.path = t;
        return "";
    }
    std::string host, port;
    if (t[0] == '[') {
        auto close = t.find(']');
        if (close == std::string::npos || close + 1 >= t.size() || t[close + 1] != ':')
            return "expected [v6addr]:port, got '" + text + "'";
        host = t.substr(1, close - 1);
        port = t.substr(close + 2);
    } else {
        auto colon = t.rfind(':');
        if (colon == std::string::npos) {
            host = defaultHost;
            port = t;
        } else {
            if (t.find(':') != colon) return "IPv6 addresses must be written [v6addr]:port: '" + text + "'";
            host = t.substr(0, colon);
            port = t.substr(colon + 1);
        }
    }
    long long p;
    if (!parseInteger(port, p) || p < 1 || p > 65535) return "invalid port in '" + text + "'";
    if (host.empty()) return "missing host in '" + text + "'";
    out.kind = Kind::Tcp;
    out.host = host;
    out.port = std::to_string(p);
    return "";
}

namespace {

void checkServerLimits(const Config& c, const Options& g) {
    // Blame the key the admin wrote: with `max_servers = 2;` alone, the default min_servers
    // of 4 is not the mistake.
    auto check = [&](const char* lowKey, int low, const char* highKey, int high) {
        if (low <= high) return;
        const char* key = g.isSet(lowKey) || !g.isSet(highKey) ? lowKey : highKey;
        throw ConfigError(g.whereOf(key) + ": key '" + key + "': " + lowKey + " (" + std::to_string(low) +
                          (g.isSet(lowKey) ? "" : ", the default") + ") exceeds " + highKey + " (" +
                          std::to_string(high) + (g.isSet(highKey) ? "" : ", the default") + ")");
    };
    check("min_servers", c.minServers, "max_servers", c.maxServers);
    check("min_spare_servers", c.minSpareServers, "max_spare_servers", c.maxSpareServers);
    check("min_spare_servers", c.minSpareServers, "max_servers", c.maxServers);
}

}  // namespace

std::unique_ptr<Config> Config::load(const std::string& path) {
    // The format is chosen by the content (looksLikeLegacyConfig); a file that cannot be read
    // goes to the libconfig reader, which reports it.
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    if (in) text << in.rdbuf();
    if (in && looksLikeLegacyConfig(text.str())) {
        std::vector<std::string> warnings;
        ConfNode root = readLegacyFile(path, &warnings);
        auto c = fromTree(root, path);
        c->legacyFormat = true;
        c->loadWarnings = std::move(warnings);
        return c;
    }
    ConfNode root = readLibconfigFile(path);
    return fromTree(root, path);
}

std::unique_ptr<Config> Config::fromTree(const ConfNode& root, const std::string& file) {
    auto c = std::make_unique<Config>();
    c->file = file;
    c->global = Options::apply(root, {&globalSettings()}, "global settings", {"connections", "virtual_hosts"});
    const Options& g = c->global;
    c->user = g.str("user");
    c->group = g.str("group");
    // Relative paths are taken from the directory of the configuration file, so that they
    // mean the same after the daemon has changed to / and on every reload.
    std::string dir = file.find('/') == std::string::npos ? "." : file.substr(0, file.rfind('/'));
    if (dir.empty()) dir = "/";
    auto absolute = [&](const std::string& p) { return p.empty() || p[0] == '/' ? p : dir + "/" + p; };
    c->pidFile = absolute(g.str("pid_file"));
    c->logFile = absolute(g.str("log_file"));
    c->syslogIdent = g.str("syslog_ident");
    c->syslogFacility = g.str("syslog_facility");
    if (log::facilityByName(c->syslogFacility) < 0)
        throw ConfigError(g.whereOf("syslog_facility") + ": key 'syslog_facility': unknown facility '" +
                          c->syslogFacility + "'");
    c->logLevel = static_cast<int>(g.integer("log_level"));
    c->minServers = static_cast<int>(g.integer("min_servers"));
    c->minSpareServers = static_cast<int>(g.integer("min_spare_servers"));
    c->maxSpareServers = static_cast<int>(g.integer("max_spare_servers"));
    c->maxServers = static_cast<int>(g.integer("max_servers"));
    c->maxRequests = g.integer("max_requests");
    c->requestTimeout = static_cast<int>(g.integer("request_timeout"));
    c->keepaliveTimeout = static_cast<int>(g.integer("keepalive_timeout"));
    c->maxKeepalive = static_cast<int>(g.integer("max_keepalive"));
    c->vhostByPolicyContext = g.boolean("vhost_by_policy_context");
    c->sessionExpire = static_cast<int>(g.integer("session_expire"));
    c->sessionMaxEntries = static_cast<size_t>(g.integer("session_max_entries"));
    c->limits.maxLineLength = static_cast<size_t>(g.integer("max_line_length"));
    c->limits.maxAttributes = static_cast<size_t>(g.integer("max_attributes"));
    c->limits.maxRequestSize = static_cast<size_t>(g.integer("max_request_size"));
    checkServerLimits(*c, g);

    std::set<std::string> seenListen;
    for (const auto& entry : g.list("port")) {
        ListenSpec ls;
        std::string e = ListenSpec::parse(entry, g.str("host"), ls);
        if (!e.empty()) throw ConfigError(g.whereOf("port") + ": key 'port': " + e);
        std::string id = ls.kind == ListenSpec::Kind::Unix ? ls.path : ls.host + "|" + ls.port;
        if (!seenListen.insert(id).second)
            throw ConfigError(g.whereOf("port") + ": key 'port': '" + entry + "' is listed twice");
        c->listen.push_back(ls);
    }
    if (c->listen.empty()) throw ConfigError(g.whereOf("port") + ": key 'port': no address to listen on");

    if (const ConfNode* conns = root.child("connections")) {
        if (conns->kind != ConfNode::Kind::Group)
            throw ConfigError(conns->where() + ": key 'connections': expected a group { name = { ... }; }");
        for (const auto& cn : conns->children) {
            std::string context = "connection '" + cn.name + "'";
            if (cn.kind != ConfNode::Kind::Group)
                throw ConfigError(cn.where() + ": " + context + ": expected a group { module = ...; }");
            const ConfNode* m = cn.child("module");
            if (!m) throw ConfigError(cn.where() + ": " + context + ": missing required key 'module'");
            const SettingTable* table = connectionSettings(m->value);
            if (!table)
                throw ConfigError(m->where() + ": " + context + ": key 'module': unsupported connection module '" +
                                  m->value + "' (supported: Sql)");
            ConnectionConfig cc{cn.name, m->value, Options::apply(cn, {table}, context), nullptr};
            SqlSettings ss;
            ss.name = cn.name;
            try {
                ss.dsn = Dsn::parse(cc.opts.str("dsn"));
            } catch (const ConfigError& e) {
                throw ConfigError(cc.opts.whereOf("dsn") + ": " + context + ": key 'dsn': " + e.what());
            }
            ss.user = cc.opts.str("user");
            ss.password = cc.opts.str("password");
            ss.connectTimeout = static_cast<int>(cc.opts.integer("connect_timeout"));
            ss.readTimeout = static_cast<int>(cc.opts.integer("read_timeout"));
            ss.writeTimeout = static_cast<int>(cc.opts.integer("write_timeout"));
            cc.sql = makeSqlConnection(ss);
            c->connections.push_back(std::move(cc));
        }
    }

    const ConfNode* vhosts = root.child("virtual_hosts");
    if (!vhosts) throw ConfigError(root.where() + ": missing required key 'virtual_hosts'");
    if (vhosts->kind != ConfNode::Kind::List || vhosts->children.empty())
        throw ConfigError(vhosts->where() + ": key 'virtual_hosts': expected a non-empty list ( { ... }, ... )");
    for (const auto& vn : vhosts->children) {
        const ConfNode* nameNode = vn.child("name");
        std::string context = nameNode ? "virtual host '" + nameNode->value + "'" : "virtual host";
        Options vo = Options::apply(vn, {&virtualHostSettings()}, context, {"plugins"});
        auto vh = std::make_unique<VirtualHost>();
        vh->name = vo.str("name");
        vh->port = trim(vo.str("port"));
        vh->where = vn.where();
        if (c->byKey_.count(vh->port))
            throw ConfigError(vo.whereOf("port") + ": " + context + ": key 'port': port " + vh->port +
                              " is already served by virtual host '" + c->byKey_[vh->port]->name + "'");
        const ConfNode* plugins = vn.child("plugins");
        if (!plugins) throw ConfigError(vn.where() + ": " + context + ": missing required key 'plugins'");
        buildChain(*plugins, c.get(), vh->chain, context);
        c->byKey_[vh->port] = vh.get();
        c->vhosts.push_back(std::move(vh));
    }
    return c;
}

std::vector<std::string> Config::warnings() const {
    std::vector<std::string> out = loadWarnings;
    for (const auto& l : listen)
        if (!vhostForKey(l.key()))
            out.push_back(global.whereOf("port") + ": port entry '" + l.text + "' has no virtual host with port = \"" +
                          l.key() + "\"" +
                          (vhostByPolicyContext ? " (only requests with a matching policy_context are served)"
                                                : ": its connections will be closed"));
    for (const auto& v : vhosts) {
        bool listened = false;
        for (const auto& l : listen) listened = listened || l.key() == v->port;
        if (!listened)
            out.push_back(v->where + ": virtual host '" + v->name + "': port " + v->port +
                          " is not in the global port list" +
                          (vhostByPolicyContext ? " (reachable by policy_context only)" : " (unreachable)"));
    }
    if (!user.empty() && !getpwnam(user.c_str()))
        out.push_back(global.whereOf("user") + ": key 'user': no such user '" + user + "'");
    if (!group.empty() && !getgrnam(group.c_str()))
        out.push_back(global.whereOf("group") + ": key 'group': no such group '" + group + "'");
    return out;
}

const VirtualHost* Config::vhostForKey(const std::string& key) const {
    auto it = byKey_.find(key);
    return it == byKey_.end() ? nullptr : it->second;
}

const VirtualHost* Config::vhostByName(const std::string& name) const {
    for (const auto& v : vhosts)
        if (v->name == name) return v.get();
    return nullptr;
}

const ConnectionConfig* Config::connection(const std::string& name) const {
    for (const auto& c : connections)
        if (c.name == name) return &c;
    return nullptr;
}

SqlConnection& Config::sqlConnection(const std::string& name, const std::string& where, const std::string& key) const {
    const ConnectionConfig* c = connection(name);
    if (!c || !c->sql)
        throw ConfigError(where + ": key '" + key + "': no connection '" + name +
                          "' configured (add connections = { " + name + " = { module = \"Sql\"; dsn = ...; }; };)");
    return *c->sql;
}

void Config::startPlugins() {
    for (auto& v : vhosts) v->chain.start();
}

void Config::cron(const std::vector<std::string>& tasks) {
    for (auto& v : vhosts) v->chain.cron(tasks);
}

namespace {

struct PluginDumper {
    std::ostream& os;
    void chain(const Chain& ch, int indent) {
        std::string pad(indent, ' ');
        for (size_t i = 0; i < ch.plugins.size(); ++i) {
            const Plugin& p = *ch.plugins[i];
            os << pad << "{\n";
            p.options().dump(os, indent + 2);
            if (const Chain* n = p.nestedChain()) {
                os << pad << "  plugins = (\n";
                chain(*n, indent + 4);
                os << pad << "  );\n";
            }
            os << pad << "}" << (i + 1 < ch.plugins.size() ? "," : "") << "\n";
        }
    }
};

}  // namespace

void Config::dump(std::ostream& os) const {
    os << "# effective configuration of " << file << " (defaults included)\n";
    global.dump(os, 0);
    os << "\nconnections = {\n";
    for (const auto& c : connections) {
        os << "  " << c.name << " = {\n";
        c.opts.dump(os, 4);
        os << "  };\n";
    }
    os << "};\n\nvirtual_hosts = (\n";
    for (size_t i = 0; i < vhosts.size(); ++i) {
        const auto& v = vhosts[i];
        os << "  {\n    name = " << quoteString(v->name) << ";\n    port = " << quoteString(v->port)
           << ";\n    plugins = (\n";
        PluginDumper{os}.chain(v->chain, 6);
        os << "    );\n  }" << (i + 1 < vhosts.size() ? "," : "") << "\n";
    }
    os << ");\n";
}

}  // namespace mtp
