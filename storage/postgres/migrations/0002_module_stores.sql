-- Schema version 2: the general module stores (storage.Modules), and the
-- vCards, private XML, last activity and PEP nodes of version 1 moved onto
-- them.
--
-- store_items holds key/value stores (coll '') and map stores. version
-- comes from one sequence: it changes on every write, is never reused (so
-- a compare-and-set cannot be fooled by a delete and a re-create) and
-- orders a collection's items by their last write.
CREATE SEQUENCE store_items_version;

CREATE TABLE store_items (
	owner   text COLLATE "C" NOT NULL,
	store   text COLLATE "C" NOT NULL,
	coll    text COLLATE "C" NOT NULL DEFAULT '',
	key     text COLLATE "C" NOT NULL,
	value   bytea NOT NULL,
	version bigint NOT NULL DEFAULT nextval('store_items_version'),
	PRIMARY KEY (owner, store, coll, key)
);
-- A collection in write order: "the last N items", eviction of the oldest.
CREATE INDEX store_items_order ON store_items (owner, store, coll, version);

-- archive_entries holds archive stores. id is time-ordered (microseconds
-- << 10, see storage.ArchiveIDShift), so a time range is an id range and
-- the primary key serves paging in both directions; with_jid queries have
-- their own index. Expiry by age across owners uses the BRIN index: ids
-- grow with insertion, so it stays a few pages however large the table.
CREATE TABLE archive_entries (
	owner    text COLLATE "C" NOT NULL,
	store    text COLLATE "C" NOT NULL,
	id       bigint NOT NULL,
	with_jid text COLLATE "C" NOT NULL DEFAULT '',
	value    bytea NOT NULL,
	PRIMARY KEY (owner, store, id)
);
CREATE INDEX archive_entries_with ON archive_entries (owner, store, with_jid, id);
CREATE INDEX archive_entries_age ON archive_entries USING brin (id);

-- The data of version 1. The old tables stay (unused) for one release, so
-- that a node of the previous release still running during a rolling
-- upgrade does not fail; a later migration drops them.
INSERT INTO store_items (owner, store, key, value)
	SELECT owner, 'vcard', '', vcard FROM vcards;

INSERT INTO store_items (owner, store, key, value)
	SELECT owner, 'private', key, data FROM private_xml WHERE key NOT LIKE '#pep %';

-- PEP kept each node as a private XML record keyed "#pep NODE"; a deleted
-- node was an empty record.
INSERT INTO store_items (owner, store, key, value)
	SELECT owner, 'pep', substr(key, 6), data FROM private_xml
	WHERE key LIKE '#pep %' AND octet_length(data) > 0;

-- Last activity: {"at": microseconds since the epoch, "status": "..."}.
INSERT INTO store_items (owner, store, key, value)
	SELECT owner, 'last', '', convert_to(json_build_object(
		'at', extract(epoch from date_trunc('second', at))::bigint * 1000000
			+ (extract(microseconds from at)::bigint % 1000000),
		'status', status)::text, 'UTF8')
	FROM last_activity;
