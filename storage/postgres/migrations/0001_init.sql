-- Aviary on PostgreSQL, schema version 1.
--
-- Key columns use the "C" collation: byte order, the same as the embedded
-- store, and what lets DeleteUser find "username@..." owner keys with one
-- index range scan whatever the database's default collation is.
-- Per-user rows are keyed by "owner": the username or the user's bare JID
-- (the roster's owner is a bare JID).

CREATE TABLE users (
	username      text COLLATE "C" PRIMARY KEY,
	sha1_salt     bytea,
	sha1_iter     integer NOT NULL DEFAULT 0,
	sha1_stored   bytea,
	sha1_server   bytea,
	sha256_salt   bytea,
	sha256_iter   integer NOT NULL DEFAULT 0,
	sha256_stored bytea,
	sha256_server bytea,
	created_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per roster owner. UpdateRosterItem locks it (SELECT ... FOR
-- UPDATE), so writers of one user's roster serialize on every node.
CREATE TABLE roster_versions (
	owner   text COLLATE "C" PRIMARY KEY,
	version bigint NOT NULL DEFAULT 0
);

CREATE TABLE roster_items (
	owner        text COLLATE "C" NOT NULL,
	contact      text COLLATE "C" NOT NULL,
	name         text NOT NULL DEFAULT '',
	subscription text NOT NULL DEFAULT 'none'
		CHECK (subscription IN ('none', 'to', 'from', 'both')),
	pending_out  boolean NOT NULL DEFAULT false,
	pending_in   boolean NOT NULL DEFAULT false,
	groups       text[] NOT NULL DEFAULT '{}',
	in_roster    boolean NOT NULL DEFAULT true,
	PRIMARY KEY (owner, contact)
);
-- Subscribers (presence broadcast at every login and presence change).
CREATE INDEX roster_items_subscribers ON roster_items (owner, contact)
	WHERE subscription IN ('from', 'both');

CREATE TABLE offline (
	id     bigserial PRIMARY KEY,
	owner  text COLLATE "C" NOT NULL,
	stanza bytea NOT NULL,
	stored timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offline_owner ON offline (owner, id);
CREATE INDEX offline_stored ON offline (stored);

CREATE TABLE vcards (
	owner text COLLATE "C" PRIMARY KEY,
	vcard bytea NOT NULL
);

CREATE TABLE private_xml (
	owner text COLLATE "C" NOT NULL,
	key   text COLLATE "C" NOT NULL,
	data  bytea NOT NULL,
	PRIMARY KEY (owner, key)
);

CREATE TABLE blocklist (
	owner text COLLATE "C" NOT NULL,
	jid   text COLLATE "C" NOT NULL,
	PRIMARY KEY (owner, jid)
);

CREATE TABLE properties (
	name  text COLLATE "C" PRIMARY KEY,
	value text NOT NULL
);

CREATE TABLE last_activity (
	owner  text COLLATE "C" PRIMARY KEY,
	at     timestamptz NOT NULL,
	status text NOT NULL DEFAULT ''
);

CREATE TABLE archive (
	seq      bigserial PRIMARY KEY,
	id       text COLLATE "C" NOT NULL,
	owner    text COLLATE "C" NOT NULL,
	with_jid text COLLATE "C" NOT NULL,
	stanza   bytea NOT NULL,
	stamped  timestamptz NOT NULL,
	UNIQUE (owner, id)
);
CREATE INDEX archive_owner ON archive (owner, seq);
CREATE INDEX archive_owner_with ON archive (owner, with_jid, seq);

CREATE TABLE plugins (
	name     text COLLATE "C" NOT NULL,
	version  text COLLATE "C" NOT NULL,
	checksum text NOT NULL,
	artifact bytea NOT NULL,
	enabled  boolean NOT NULL DEFAULT false,
	uploaded timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, version)
);

CREATE TABLE node_plugins (
	node    text COLLATE "C" NOT NULL,
	name    text COLLATE "C" NOT NULL,
	version text NOT NULL,
	state   text NOT NULL,
	updated timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (node, name)
);
