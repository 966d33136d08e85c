-- sqlite.sql: the tables of mtpolicyd's accounting and quota set-up, for SQLite.
-- See mtpolicyd-accounting-quota(7).
--
--   install -d -o mtpolicyd -g mtpolicyd -m 0750 /var/lib/mtpolicyd
--   sqlite3 /var/lib/mtpolicyd/mtpolicyd.sqlite < sql/sqlite.sql
--   chown mtpolicyd:mtpolicyd /var/lib/mtpolicyd/mtpolicyd.sqlite
--
-- The mtpolicyd user must be able to write both the file and its directory: the database runs
-- in WAL mode, with the files mtpolicyd.sqlite-wal and mtpolicyd.sqlite-shm next to it.
-- Safe to load again: every table is created only when it does not exist yet.

-- --- Accounting: one table per counted field, acct_<field> -----------------------------------
-- The Accounting plugin creates these itself (exactly like this) when they are missing; they
-- are here for administrators who prefer to create tables by hand. One row per key (the value
-- of the field, e.g. the client address) and time bucket (time_pattern, "%Y-%m": the month).
-- Tables made by the Perl mtpolicyd (no unique index) are used as they are; the plugin adds a
-- unique (key, time) index to them.

CREATE TABLE IF NOT EXISTS `acct_client_address` (
  `id` INTEGER PRIMARY KEY AUTOINCREMENT,
  `key` VARCHAR(255) NOT NULL,
  `time` VARCHAR(255) NOT NULL,
  `count` INTEGER NOT NULL DEFAULT 0,
  `count_rcpt` INTEGER NOT NULL DEFAULT 0,
  `size` INTEGER NOT NULL DEFAULT 0,
  `size_rcpt` INTEGER NOT NULL DEFAULT 0,
  UNIQUE (`key`, `time`)
);

CREATE TABLE IF NOT EXISTS `acct_sasl_username` (
  `id` INTEGER PRIMARY KEY AUTOINCREMENT,
  `key` VARCHAR(255) NOT NULL,
  `time` VARCHAR(255) NOT NULL,
  `count` INTEGER NOT NULL DEFAULT 0,
  `count_rcpt` INTEGER NOT NULL DEFAULT 0,
  `size` INTEGER NOT NULL DEFAULT 0,
  `size_rcpt` INTEGER NOT NULL DEFAULT 0,
  UNIQUE (`key`, `time`)
);

-- Counted messages (instance_dedup): each message's instance, recorded in the same
-- transaction as its counts, so that a message resent after a worker died between counting
-- and answering is never counted twice. Rows older than instance_retention are deleted by
-- the plugin.
CREATE TABLE IF NOT EXISTS `acct_instances` (
  `plugin` VARCHAR(64) NOT NULL,
  `instance` VARCHAR(128) NOT NULL,
  `time` INTEGER NOT NULL,
  PRIMARY KEY (`plugin`, `instance`)
);
CREATE INDEX IF NOT EXISTS `acct_instances_time` ON `acct_instances` (`time`);

-- --- SqlUserConfig: per-address settings as a JSON object -------------------------------------
-- Read by the plugin's default query, SELECT config FROM user_config WHERE address=?
-- Example: INSERT INTO user_config (address, config)
--            VALUES ('user@example.org', '{"greylisting":"on"}');

CREATE TABLE IF NOT EXISTS `user_config` (
  `address` VARCHAR(255) NOT NULL PRIMARY KEY,
  `config` TEXT NOT NULL
);

-- --- Per-client quota limits (the accounting how-to) ----------------------------------------
-- A relay policy is a JSON object of session variables, e.g. {"quota_count":"100000"} for
-- Quota's uc_threshold = "quota_count"; a relay host is a client address with its policy:
--
--   SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id)
--     WHERE h.client_address = ?
--
-- The Perl how-to named the second column `desc`; mtpolicyd reads only `config`, so a table
-- made from the how-to works as it is. client_address is unique here (a host has one policy)
-- and indexed, which the query above needs.

CREATE TABLE IF NOT EXISTS `relay_policies` (
  `id` INTEGER PRIMARY KEY AUTOINCREMENT,
  `name` VARCHAR(64) NOT NULL,
  `config` TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS `relay_hosts` (
  `id` INTEGER PRIMARY KEY AUTOINCREMENT,
  `client_address` VARCHAR(64) NOT NULL UNIQUE,
  `relay_policy` INTEGER NOT NULL REFERENCES `relay_policies` (`id`)
);

CREATE INDEX IF NOT EXISTS `relay_hosts_relay_policy` ON `relay_hosts` (`relay_policy`);

-- Example policies and hosts from the how-to (uncomment, and use your clients' addresses):
--
-- INSERT INTO relay_policies (id, name, config) VALUES (1, 'standard relay host', '{"quota_count":"10000"}');
-- INSERT INTO relay_policies (id, name, config) VALUES (2, 'premium relay host', '{"quota_count":"100000"}');
-- INSERT INTO relay_hosts (client_address, relay_policy) VALUES ('192.0.2.3', 1);
-- INSERT INTO relay_hosts (client_address, relay_policy) VALUES ('2001:db8::4', 2);
