package postgres

// The hot queries, named so explain_test.go checks the very SQL the store
// runs (see EXPLAIN.md).
const (
	qGetUser = `SELECT sha1_salt, sha1_iter, sha1_stored, sha1_server,
	sha256_salt, sha256_iter, sha256_stored, sha256_server, created_at
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

	qOfflineCount = `SELECT count(*) FROM offline WHERE owner = $1`

	qOfflineExpire = `DELETE FROM offline WHERE stored < $1`

	qGetVCard = `SELECT vcard FROM vcards WHERE owner = $1`

	qGetPrivate = `SELECT data FROM private_xml WHERE owner = $1 AND key = $2`

	qBlockList = `SELECT jid FROM blocklist WHERE owner = $1 ORDER BY jid`

	qGetProperty = `SELECT value FROM properties WHERE name = $1`

	qGetLast = `SELECT at, status FROM last_activity WHERE owner = $1`

	qArchiveAfter = `SELECT seq FROM archive WHERE owner = $1 AND id = $2`

	qArchive = `SELECT id, with_jid, stanza, stamped FROM archive
	WHERE owner = $1 AND seq > $2 ORDER BY seq LIMIT $3`

	qArchiveWith = `SELECT id, with_jid, stanza, stamped FROM archive
	WHERE owner = $1 AND with_jid = $2 AND seq > $3 ORDER BY seq LIMIT $4`
)
