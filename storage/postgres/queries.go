package postgres

// The hot queries, named so explain_test.go checks the very SQL the store
// runs (see EXPLAIN.md).
const (
	qGetUser = `SELECT sha1_salt, sha1_iter, sha1_stored, sha1_server,
	sha256_salt, sha256_iter, sha256_stored, sha256_server, created_at, locked_at
	FROM users WHERE username = $1`

	qRosterItems = `SELECT contact, name, subscription, pending_out, pending_in, groups, in_roster
	FROM roster_items WHERE owner = $1 ORDER BY contact`

	qRosterItem = `SELECT contact, name, subscription, pending_out, pending_in, groups, in_roster
	FROM roster_items WHERE owner = $1 AND contact = $2`

	qRosterVersion = `SELECT version FROM roster_versions WHERE owner = $1`

	qRosterLockCreate = `INSERT INTO roster_versions (owner, version) VALUES ($1, 0) ON CONFLICT (owner) DO NOTHING`

	qRosterLock = `SELECT version FROM roster_versions WHERE owner = $1 FOR UPDATE`

	qRosterBump = `UPDATE roster_versions SET version = version + 1 WHERE owner = $1 RETURNING version`

	qRosterUpsert = `INSERT INTO roster_items (owner, contact, name, subscription, pending_out, pending_in, groups, in_roster)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
	ON CONFLICT (owner, contact) DO UPDATE SET name = excluded.name,
	subscription = excluded.subscription, pending_out = excluded.pending_out,
	pending_in = excluded.pending_in, groups = excluded.groups, in_roster = excluded.in_roster`

	qRosterDelete = `DELETE FROM roster_items WHERE owner = $1 AND contact = $2`

	qRosterCountRows = `SELECT count(*) FROM (SELECT 1 FROM roster_items WHERE owner = $1 LIMIT $2) q`

	qRosterCountPending = `SELECT count(*) FROM (SELECT 1 FROM roster_items WHERE owner = $1 AND pending_in LIMIT $2) q`

	qSubscribers = `SELECT contact FROM roster_items
	WHERE owner = $1 AND subscription IN ('from', 'both') ORDER BY contact`

	// qOfflineLock serializes one owner's quota checks; the two-key form
	// keeps its key space apart from the migration lock's.
	qOfflineLock = `SELECT pg_advisory_xact_lock(1635150177, hashtext($1))`

	// qOfflineInsertLimited inserts when the owner has fewer than $3
	// messages and their stanzas and this one take at most $4 bytes.
	// octet_length of a stored bytea reads its header, not the value.
	qOfflineInsertLimited = `INSERT INTO offline (owner, stanza)
	SELECT $1, $2 WHERE (SELECT count(*) FROM (SELECT 1 FROM offline WHERE owner = $1 LIMIT $3) q) < $3
	AND (SELECT coalesce(sum(octet_length(stanza)), 0) FROM offline WHERE owner = $1) + octet_length($2::bytea) <= $4
	RETURNING id`

	qOfflineInsert = `INSERT INTO offline (owner, stanza) VALUES ($1, $2)`

	qOfflineTake = `DELETE FROM offline WHERE owner = $1 RETURNING id, stanza, stored`

	// qOfflineTakeUpTo deletes the oldest messages: the first whatever its
	// size, then those whose running total stays within $2. Each row also
	// carries how many messages the owner had, so the caller learns
	// whether some are left without another statement.
	qOfflineTakeUpTo = `WITH q AS (
	SELECT id, row_number() OVER w AS n, sum(octet_length(stanza)) OVER w AS total
	FROM offline WHERE owner = $1 WINDOW w AS (ORDER BY id)),
	d AS (DELETE FROM offline WHERE id IN (SELECT id FROM q WHERE n = 1 OR total <= $2)
	RETURNING id, stanza, stored)
	SELECT d.id, d.stanza, d.stored, (SELECT count(*) FROM q) FROM d`

	// qOfflineReadUpTo reads the oldest messages not in $2: the first
	// whatever its size, then those whose running total stays within $3,
	// leaving them stored. Like qOfflineTakeUpTo, each row carries how
	// many messages not in $2 the owner has, and the window reads only the
	// stanzas' sizes (octet_length of a stored bytea reads its header).
	qOfflineReadUpTo = `WITH q AS (
	SELECT id, row_number() OVER w AS n, sum(octet_length(stanza)) OVER w AS total
	FROM offline WHERE owner = $1 AND id <> ALL($2::bigint[]) WINDOW w AS (ORDER BY id))
	SELECT o.id, o.stanza, o.stored, (SELECT count(*) FROM q) FROM offline o
	WHERE o.id IN (SELECT id FROM q WHERE n = 1 OR total <= $3) ORDER BY o.id`

	// qOfflineReadAll reads all the owner's messages not in $2.
	qOfflineReadAll = `SELECT id, stanza, stored FROM offline
	WHERE owner = $1 AND id <> ALL($2::bigint[]) ORDER BY id`

	// qOfflineDelete deletes the owner's messages with the IDs in $2.
	qOfflineDelete = `DELETE FROM offline WHERE owner = $1 AND id = ANY($2::bigint[])`

	qOfflineCount = `SELECT count(*) FROM offline WHERE owner = $1`

	qOfflineExpire = `DELETE FROM offline WHERE stored < $1`

	qBlockList = `SELECT jid FROM blocklist WHERE owner = $1 ORDER BY jid`

	qGetProperty = `SELECT value FROM properties WHERE name = $1`
)

// The module stores (items.go, archivestore.go).
const (
	qItemGet = `SELECT value, version FROM store_items
	WHERE owner = $1 AND store = $2 AND coll = $3 AND key = $4`

	qItemUpsert = `INSERT INTO store_items (owner, store, coll, key, value) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (owner, store, coll, key) DO UPDATE
	SET value = excluded.value, version = nextval('store_items_version')
	RETURNING version`

	qItemInsertNew = `INSERT INTO store_items (owner, store, coll, key, value) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (owner, store, coll, key) DO NOTHING
	RETURNING version`

	qItemCAS = `UPDATE store_items SET value = $5, version = nextval('store_items_version')
	WHERE owner = $1 AND store = $2 AND coll = $3 AND key = $4 AND version = $6
	RETURNING version`

	qItemDelete = `DELETE FROM store_items WHERE owner = $1 AND store = $2 AND coll = $3 AND key = $4`

	qItemDeleteKeys = `DELETE FROM store_items WHERE owner = $1 AND store = $2 AND coll = $3 AND key = ANY($4::text[])`

	qItemKeys = `SELECT key FROM store_items WHERE owner = $1 AND store = $2 AND coll = $3 ORDER BY key`

	// qItemLock serializes the limited writes of one owner's store; the
	// two-key form keeps its key space apart from the others' ("stor").
	qItemLock = `SELECT pg_advisory_xact_lock(1937010546, hashtext($1 || ' ' || $2))`

	qItemUsage = `SELECT count(*), coalesce(sum(octet_length(value)), 0)::bigint FROM store_items
	WHERE owner = $1 AND store = $2 AND NOT (coll = $3 AND key = $4)`

	qItemEvictable = `SELECT key, octet_length(value) FROM store_items
	WHERE owner = $1 AND store = $2 AND coll = $3 AND key <> $4
	ORDER BY version DESC OFFSET $5`

	qMapList = `SELECT key, value, version FROM store_items
	WHERE owner = $1 AND store = $2 AND coll = $3 ORDER BY version LIMIT $4`

	qMapListNewest = `SELECT key, value, version FROM store_items
	WHERE owner = $1 AND store = $2 AND coll = $3 ORDER BY version DESC LIMIT $4`

	qMapCount = `SELECT count(*) FROM store_items WHERE owner = $1 AND store = $2 AND coll = $3`

	qMapCollections = `SELECT DISTINCT coll FROM store_items WHERE owner = $1 AND store = $2 ORDER BY coll`

	qMapDeleteCollection = `DELETE FROM store_items WHERE owner = $1 AND store = $2 AND coll = $3`

	qArchiveInsert = `INSERT INTO archive_entries (owner, store, id, with_jid, value)
	VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`

	// qArchiveHighest finds the owner's highest ID in one microsecond, where
	// an insert whose ID collided goes next (an index-only probe).
	qArchiveHighest = `SELECT max(id) FROM archive_entries WHERE owner = $1 AND store = $2 AND id >= $3 AND id < $4`

	qArchiveInsertBatch = `INSERT INTO archive_entries (owner, store, id, with_jid, value)
	SELECT o, $1, i, w, v FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bytea[]) AS u(o, i, w, v)
	ON CONFLICT DO NOTHING RETURNING owner, id`

	qArchiveGet = `SELECT with_jid, value FROM archive_entries WHERE owner = $1 AND store = $2 AND id = $3`

	// A page: ids in [$3, $4), oldest first or (Last) newest first.
	qArchivePage = `SELECT id, with_jid, value FROM archive_entries
	WHERE owner = $1 AND store = $2 AND id >= $3 AND id < $4 ORDER BY id LIMIT $5`

	qArchivePageLast = `SELECT id, with_jid, value FROM archive_entries
	WHERE owner = $1 AND store = $2 AND id >= $3 AND id < $4 ORDER BY id DESC LIMIT $5`

	qArchivePageWith = `SELECT id, with_jid, value FROM archive_entries
	WHERE owner = $1 AND store = $2 AND with_jid = $5 AND id >= $3 AND id < $4 ORDER BY id LIMIT $6`

	qArchivePageWithLast = `SELECT id, with_jid, value FROM archive_entries
	WHERE owner = $1 AND store = $2 AND with_jid = $5 AND id >= $3 AND id < $4 ORDER BY id DESC LIMIT $6`

	qArchiveCount = `SELECT count(*) FROM archive_entries
	WHERE owner = $1 AND store = $2 AND id >= $3 AND id < $4`

	qArchiveCountWith = `SELECT count(*) FROM archive_entries
	WHERE owner = $1 AND store = $2 AND with_jid = $5 AND id >= $3 AND id < $4`

	qArchiveUpdate = `UPDATE archive_entries SET value = $4 WHERE owner = $1 AND store = $2 AND id = $3`

	qArchiveDelete = `DELETE FROM archive_entries WHERE owner = $1 AND store = $2 AND id = $3`

	qArchiveDeleteOwner = `DELETE FROM archive_entries WHERE owner = $1 AND store = $2`

	qArchiveDeleteBefore = `DELETE FROM archive_entries WHERE owner = $1 AND store = $2 AND id < $3`

	qArchiveExpire = `DELETE FROM archive_entries WHERE store = $1 AND id < $2`
)
