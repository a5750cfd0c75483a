-- Schema version 2: the general module stores (storage.Modules), and the
-- vCards, private XML, last activity and PEP nodes of version 1 moved onto
-- them.
--
-- store_items holds key/value stores (coll '') and map stores. version is
-- the rowid with AUTOINCREMENT: a write replaces the row (INSERT OR
-- REPLACE), so every write gets a version never used before in the table,
-- and a collection's items sort by their last write.
CREATE TABLE store_items (
	version INTEGER PRIMARY KEY AUTOINCREMENT,
	owner   TEXT NOT NULL,
	store   TEXT NOT NULL,
	coll    TEXT NOT NULL DEFAULT '',
	key     TEXT NOT NULL,
	value   BLOB NOT NULL,
	UNIQUE (owner, store, coll, key)
);
CREATE INDEX store_items_order ON store_items (owner, store, coll, version);

-- archive_entries holds archive stores. id is time-ordered (microseconds
-- << 10, see storage.ArchiveIDShift) and is the rowid, so expiry by age is
-- a rowid range; a time range is an id range, and the narrow index
-- (owner, store, id) serves a page either way and the count without
-- reading the values. with_jid queries have their own index.
CREATE TABLE archive_entries (
	id       INTEGER PRIMARY KEY,
	owner    TEXT NOT NULL,
	store    TEXT NOT NULL,
	with_jid TEXT NOT NULL DEFAULT '',
	value    BLOB NOT NULL
);
CREATE INDEX archive_entries_owner ON archive_entries (owner, store, id);
CREATE INDEX archive_entries_with ON archive_entries (owner, store, with_jid, id);

-- The data of version 1; the old tables stay, unused, until a later
-- migration drops them.
INSERT INTO store_items (owner, store, key, value)
	SELECT owner, 'vcard', '', vcard FROM vcards;

INSERT INTO store_items (owner, store, key, value)
	SELECT owner, 'private', key, data FROM private_xml WHERE key NOT LIKE '#pep %';

-- PEP kept each node as a private XML record keyed "#pep NODE"; a deleted
-- node was an empty record.
INSERT INTO store_items (owner, store, key, value)
	SELECT owner, 'pep', substr(key, 6), data FROM private_xml
	WHERE key LIKE '#pep %' AND length(data) > 0;

-- Last activity: {"at": microseconds since the epoch, "status": "..."}.
INSERT INTO store_items (owner, store, key, value)
	SELECT owner, 'last', '', CAST(json_object('at', at, 'status', status) AS BLOB)
	FROM last_activity;
