-- mysql.sql: the tables of mtpolicyd's accounting and quota set-up, for MySQL and MariaDB.
-- See mtpolicyd-accounting-quota(7).
--
--   mysql mtpolicyd < sql/mysql.sql
--
-- Safe to load again: every table is created only when it does not exist yet.
--
-- The database and its user, once, as the database administrator (pick another password):
--
--   CREATE DATABASE mtpolicyd CHARACTER SET utf8mb4;
--   CREATE USER 'mtpolicyd'@'localhost' IDENTIFIED BY 'secret';
--   GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON mtpolicyd.* TO 'mtpolicyd'@'localhost';
--
-- CREATE is needed even when the tables below exist: the Accounting plugin runs
-- CREATE TABLE IF NOT EXISTS for each of its tables once per worker, and the server checks the
-- privilege before it looks whether the table exists.

-- --- Accounting: one table per counted field, acct_<field> -----------------------------------
-- The Accounting plugin creates these itself (exactly like this) when they are missing; they
-- are here for administrators who prefer to create tables by hand. One row per key (the value
-- of the field, e.g. the client address) and time bucket (time_pattern, "%Y-%m": the month).
-- Tables made by the Perl mtpolicyd (INT UNSIGNED counters, MyISAM, latin1) are used as they
-- are.

CREATE TABLE IF NOT EXISTS `acct_client_address` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `key` VARCHAR(255) NOT NULL,
  `time` VARCHAR(255) NOT NULL,
  `count` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `size` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `size_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `time_key` (`key`, `time`),
  KEY (`key`),
  KEY (`time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS `acct_sasl_username` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `key` VARCHAR(255) NOT NULL,
  `time` VARCHAR(255) NOT NULL,
  `count` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `size` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `size_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `time_key` (`key`, `time`),
  KEY (`key`),
  KEY (`time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Counted messages (instance_dedup, on by default): the Accounting plugin records each
-- message's instance here in the same transaction as its counts, so a message that Postfix
-- resends after a worker died between counting and answering is never counted twice, by
-- whichever worker gets it. Rows older than instance_retention (a day) are deleted by the
-- plugin itself (it needs the DELETE privilege for that). Atomic only on InnoDB.
CREATE TABLE IF NOT EXISTS `acct_instances` (
  `plugin` VARCHAR(64) NOT NULL,
  `instance` VARCHAR(128) NOT NULL,
  `time` BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (`plugin`, `instance`),
  KEY (`time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- --- SqlUserConfig: per-address settings as a JSON object -------------------------------------
-- Read by the plugin's default query, SELECT config FROM user_config WHERE address=?
-- Example: INSERT INTO user_config (address, config)
--            VALUES ('user@example.org', '{"greylisting":"on"}');

CREATE TABLE IF NOT EXISTS `user_config` (
  `address` VARCHAR(255) NOT NULL,
  `config` TEXT NOT NULL,
  PRIMARY KEY (`address`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

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
  `id` INT NOT NULL AUTO_INCREMENT,
  `name` VARCHAR(64) NOT NULL,
  `config` TEXT NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS `relay_hosts` (
  `id` INT NOT NULL AUTO_INCREMENT,
  `client_address` VARCHAR(64) NOT NULL,
  `relay_policy` INT NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `client_address` (`client_address`),
  KEY `relay_policy` (`relay_policy`),
  CONSTRAINT `relay_hosts_ibfk_1` FOREIGN KEY (`relay_policy`) REFERENCES `relay_policies` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Example policies and hosts from the how-to (uncomment, and use your clients' addresses):
--
-- INSERT INTO relay_policies (id, name, config) VALUES (1, 'standard relay host', '{"quota_count":"10000"}');
-- INSERT INTO relay_policies (id, name, config) VALUES (2, 'premium relay host', '{"quota_count":"100000"}');
-- INSERT INTO relay_hosts (client_address, relay_policy) VALUES ('192.0.2.3', 1);
-- INSERT INTO relay_hosts (client_address, relay_policy) VALUES ('2001:db8::4', 2);
