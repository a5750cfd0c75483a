-- Aviary embedded store, schema version 1. Times are microseconds since the
-- Unix epoch, UTC. Per-user rows are keyed by "owner", which is the
-- username or the user's bare JID (the roster's owner is a bare JID).
CREATE TABLE users (
	username      TEXT PRIMARY KEY,
	sha1_salt     BLOB,
	sha1_iter     INTEGER NOT NULL DEFAULT 0,
	sha1_stored   BLOB,
	sha1_server   BLOB,
	sha256_salt   BLOB,
	sha256_iter   INTEGER NOT NULL DEFAULT 0,
	sha256_stored BLOB,
	sha256_server BLOB,
	created_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE roster_versions (
	owner   TEXT PRIMARY KEY,
	version INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE roster_items (
	owner        TEXT NOT NULL,
	contact      TEXT NOT NULL,
	name         TEXT NOT NULL DEFAULT '',
	subscription TEXT NOT NULL DEFAULT 'none'
		CHECK (subscription IN ('none', 'to', 'from', 'both')),
	pending_out  INTEGER NOT NULL DEFAULT 0,
	pending_in   INTEGER NOT NULL DEFAULT 0,
	groups_json  TEXT NOT NULL DEFAULT '[]',
	in_roster    INTEGER NOT NULL DEFAULT 1,
	PRIMARY KEY (owner, contact)
) WITHOUT ROWID;

CREATE TABLE offline (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	owner  TEXT NOT NULL,
	stanza BLOB NOT NULL,
	stored INTEGER NOT NULL
);
CREATE INDEX offline_owner ON offline (owner, id);
CREATE INDEX offline_stored ON offline (stored);

CREATE TABLE vcards (
	owner TEXT PRIMARY KEY,
	vcard BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE private_xml (
	owner TEXT NOT NULL,
	key   TEXT NOT NULL,
	data  BLOB NOT NULL,
	PRIMARY KEY (owner, key)
) WITHOUT ROWID;

CREATE TABLE blocklist (
	owner TEXT NOT NULL,
	jid   TEXT NOT NULL,
	PRIMARY KEY (owner, jid)
) WITHOUT ROWID;

CREATE TABLE properties (
	name  TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE last_activity (
	owner  TEXT PRIMARY KEY,
	at     INTEGER NOT NULL,
	status TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

CREATE TABLE archive (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	id       TEXT NOT NULL,
	owner    TEXT NOT NULL,
	with_jid TEXT NOT NULL,
	stanza   BLOB NOT NULL,
	stamped  INTEGER NOT NULL,
	UNIQUE (owner, id)
);
CREATE INDEX archive_owner ON archive (owner, seq);
CREATE INDEX archive_owner_with ON archive (owner, with_jid, seq);

CREATE TABLE plugins (
	name     TEXT NOT NULL,
	version  TEXT NOT NULL,
	checksum TEXT NOT NULL,
	artifact BLOB NOT NULL,
	enabled  INTEGER NOT NULL DEFAULT 0,
	uploaded INTEGER NOT NULL,
	PRIMARY KEY (name, version)
) WITHOUT ROWID;

CREATE TABLE node_plugins (
	node    TEXT NOT NULL,
	name    TEXT NOT NULL,
	version TEXT NOT NULL,
	state   TEXT NOT NULL,
	updated INTEGER NOT NULL,
	PRIMARY KEY (node, name)
) WITHOUT ROWID;
