// Exception types used across mtpolicyd. Everything thrown derives from std::exception;
// each boundary (request, libevent callback, worker, main) has exactly one catch.
#pragma once

#include <stdexcept>
#include <string>

namespace mtp {

// A configuration problem. The message already names file, line and key.
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A database problem (connection lost, statement failed).
class DbError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The database cannot be reached (connection lost, server down, file cannot be opened). The
// driver logs the outage once; requests failing because of it are logged quietly.
class DbUnavailable : public DbError {
public:
    using DbError::DbError;
};

// Malformed input on the wire; the connection is closed without a reply.
class ProtocolError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A plugin failed while processing a request (wraps the original message with the plugin name).
class PluginError : public std::runtime_error {
public:
    explicit PluginError(const std::string& what, bool databaseDown = false)
        : std::runtime_error(what), databaseDown_(databaseDown) {}
    // The cause was DbUnavailable: already logged once by the driver.
    bool databaseDown() const { return databaseDown_; }

private:
    bool databaseDown_;
};

// A system call failed; carries errno in the message.
class SystemError : public std::runtime_error {
public:
    SystemError(const std::string& what, int err);
    int code() const { return code_; }

private:
    int code_;
};

}  // namespace mtp
