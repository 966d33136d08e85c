// The whole daemon configuration: global settings, named connections and virtual hosts with
// their plugin chains. Loading validates everything and builds every plugin (constructors do
// no I/O), so a Config that loaded is one the workers can run.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <unordered_map>
#include <vector>

#include "mtpolicyd/core/ConfNode.h"
#include "mtpolicyd/core/Settings.h"
#include "mtpolicyd/core/VirtualHost.h"
#include "mtpolicyd/sql/SqlConnection.h"

namespace mtp {

// One entry of `port`: a TCP address or a unix socket path.
struct ListenSpec {
    enum class Kind { Tcp, Unix };
    Kind kind = Kind::Tcp;
    std::string text;  // as written in the config
    std::string host;  // TCP: address or name ("*" for any)
    std::string port;  // TCP: port number
    std::string path;  // Unix: socket path

    // The key a virtual host uses to claim this listener: the port or the socket path.
    const std::string& key() const { return kind == Kind::Tcp ? port : path; }
    // Parses "host:port", "[v6]:port", "port", "/path" or "/path|unix"; `defaultHost` is used
    // for a bare port. Returns an error text, or "" on success.
    static std::string parse(const std::string& text, const std::string& defaultHost, ListenSpec& out);
};

struct ConnectionConfig {
    std::string name;
    std::string module;
    Options opts;
    // The handle (module Sql): created with the configuration, connected lazily in each
    // worker after fork, so every worker has its own.
    std::shared_ptr<SqlConnection> sql;
};

struct Limits {
    size_t maxLineLength = 16384;
    size_t maxAttributes = 1024;
    size_t maxRequestSize = 131072;
};

class Config {
public:
    std::string file;
    Options global;

    // Typed copies of the global settings the server uses.
    std::string user, group, pidFile, logFile, syslogIdent, syslogFacility;
    int logLevel = 2;
    std::vector<ListenSpec> listen;
    int minServers = 4, minSpareServers = 4, maxSpareServers = 12, maxServers = 25;
    long long maxRequests = 1000;
    int requestTimeout = 20, keepaliveTimeout = 330, maxKeepalive = 0;
    bool vhostByPolicyContext = false;
    int sessionExpire = 300;
    size_t sessionMaxEntries = 20000;
    Limits limits;

    std::vector<ConnectionConfig> connections;
    std::vector<std::unique_ptr<VirtualHost>> vhosts;

    // The file was in the mtpolicyd 2.x (Config::General) format, and what its reader accepted
    // without using it (a <SessionCache> block, Memcached or Redis connections).
    bool legacyFormat = false;
    std::vector<std::string> loadWarnings;

    // Loads and validates a configuration file, libconfig or mtpolicyd 2.x format (chosen by
    // looksLikeLegacyConfig). Throws ConfigError (file, line, key).
    static std::unique_ptr<Config> load(const std::string& path);
    // Builds from an already-read tree (tests, other formats).
    static std::unique_ptr<Config> fromTree(const ConfNode& root, const std::string& file);

    const VirtualHost* vhostForKey(const std::string& key) const;
    const VirtualHost* vhostByName(const std::string& name) const;
    const ConnectionConfig* connection(const std::string& name) const;
    // The SQL connection of that name; throws ConfigError naming `where` and `key` when there
    // is none (mtpolicyd: "no connection db configured").
    SqlConnection& sqlConnection(const std::string& name, const std::string& where, const std::string& key) const;

    // Things that are valid but probably not meant: a port no virtual host serves, a user or
    // group that does not exist on this machine; first the loadWarnings.
    std::vector<std::string> warnings() const;

    // Prints the effective configuration, defaults included, in the native format.
    void dump(std::ostream& os) const;

    // Start every plugin (in a worker, after fork) / run cron tasks.
    void startPlugins();
    void cron(const std::vector<std::string>& tasks);

private:
    std::unordered_map<std::string, const VirtualHost*> byKey_;
};

// mtpolicyd --convert-config: reads a file in the mtpolicyd 2.x format and returns the
// equivalent native (libconfig) configuration text, with comments naming the source blocks.
// The text is checked to load to the same configuration before it is returned. Throws
// ConfigError (file, line, key) when the file is invalid or already libconfig. `warnings`
// receives what was accepted but is unused (also written into the text as comments).
std::string convertLegacyConfig(const std::string& path, std::vector<std::string>* warnings = nullptr);
// The same from a tree read by readLegacyFile/readLegacyString; `file` is its name.
std::string formatNativeConfig(const ConfNode& legacyRoot, const std::string& file,
                               const std::vector<std::string>& warnings);

const SettingTable& globalSettings();
const SettingTable& virtualHostSettings();
// Settings of a connection module ("Sql"), or nullptr when the module is unknown.
const SettingTable* connectionSettings(const std::string& module);

}  // namespace mtp
