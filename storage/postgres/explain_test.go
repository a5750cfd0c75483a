package postgres

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

var updateExplain = flag.Bool("update-explain", false, "rewrite EXPLAIN.md from the plans this test sees")

// The hot queries with realistic arguments for the data fill() makes.
func hotQueries() []struct {
	name, use, sql string
	args           []any
} {
	lo, hi := shared.OwnerRange("user77")
	return []struct {
		name, use, sql string
		args           []any
	}{
		{"GetUser", "every login (SASL): the only query login makes", qGetUser, []any{"user123"}},
		{"GetRoster items", "roster get at login", qRosterItems, []any{"user77@example.com"}},
		{"GetRosterItem", "every subscription stanza", qRosterItem, []any{"user77@example.com", "contact5@example.net"}},
		{"RosterVersion", "roster get with ver (XEP-0237)", qRosterVersion, []any{"user77@example.com"}},
		{"UpdateRosterItem lock", "every roster change: the per-owner row lock", qRosterLock, []any{"user77@example.com"}},
		{"UpdateRosterItem bump", "every roster change", qRosterBump, []any{"user77@example.com"}},
		{"UpdateRosterItem delete", "roster remove", qRosterDelete, []any{"user77@example.com", "contact5@example.net"}},
		{"Subscribers", "every presence broadcast", qSubscribers, []any{"user77@example.com"}},
		{"StoreOffline (quota)", "every message to an offline user", qOfflineInsertLimited, []any{"user77@example.com", []byte("<message/>"), 100, int64(10 << 20)}},
		{"TakeOffline", "taking a whole offline queue", qOfflineTake, []any{"user77@example.com"}},
		{"TakeOfflineUpTo", "taking an offline queue a portion at a time", qOfflineTakeUpTo, []any{"user77@example.com", 1 << 20}},
		{"ReadOfflineUpTo", "every login with offline messages, a portion at a time", qOfflineReadUpTo, []any{"user77@example.com", []int64{3, 4}, 1 << 20}},
		{"ReadOfflineUpTo (all)", "the offline queue to a session that is not paced", qOfflineReadAll, []any{"user77@example.com", []int64{3, 4}}},
		{"DeleteOffline", "once handed-over offline messages are safe", qOfflineDelete, []any{"user77@example.com", []int64{3, 4}}},
		{"RosterQuota rows", "roster write creating an item", qRosterCountRows, []any{"user77@example.com", 1000}},
		{"RosterQuota pending", "roster write adding a pending request", qRosterCountPending, []any{"user77@example.com", 100}},
		{"CountOffline", "quota checks, admin", qOfflineCount, []any{"user77@example.com"}},
		{"ExpireOffline", "periodic expiry on the senior node", qOfflineExpire, []any{fillStart.Add(30 * time.Minute)}},
		{"BlockList", "every login and stanza filtering", qBlockList, []any{"user77"}},
		{"GetProperty", "cluster switch and settings", qGetProperty, []any{"prop7"}},
		{"KeyValue/Map Get", "vCard get, private XML get (bookmarks at login), last activity, every PEP node read", qItemGet, []any{"user77@example.com", "private", "", "storage storage:bookmarks"}},
		{"KeyValue CompareAndSet", "read-modify-write (UpdateKV)", qItemCAS, []any{"user77@example.com", "vcard", "", "", []byte("<vCard/>"), int64(5)}},
		{"Quota usage", "every write under Limits (private XML, PEP)", qItemUsage, []any{"user77@example.com", "pep", "urn:xmpp:avatar:data", "abc"}},
		{"Map evictable", "every write with Limits.Max (pubsub max_items)", qItemEvictable, []any{"user77@example.com", "pep", "node3", "abc", 9}},
		{"Map List newest", "pubsub items: the last N", qMapListNewest, []any{"user77@example.com", "pep", "node3", 10}},
		{"Map Collections", "pubsub node list", qMapCollections, []any{"user77@example.com", "pep"}},
		{"Archive last 50", "MAM catch-up: the last page of a 50,000-message archive", qArchivePageLast, []any{"heavy@example.com", "mam", int64(0), int64(math.MaxInt64), 51}},
		{"Archive page after", "MAM paging forward (RSM after)", qArchivePage, []any{"heavy@example.com", "mam", archiveID(25000), int64(math.MaxInt64), 51}},
		{"Archive last 50 with", "MAM query filtered by contact", qArchivePageWithLast, []any{"heavy@example.com", "mam", int64(0), int64(math.MaxInt64), "with3@example.net", 51}},
		{"Archive time range", "MAM query with start and end", qArchivePage, []any{"heavy@example.com", "mam", archiveID(20000), archiveID(21000), 51}},
		{"Archive count", "RSM count (only when asked): an index-only scan over the matches", qArchiveCount, []any{"user77@example.com", "mam", int64(0), int64(math.MaxInt64)}},
		{"Archive count with", "RSM count filtered by contact", qArchiveCountWith, []any{"user77@example.com", "mam", int64(0), int64(math.MaxInt64), "with3@example.net"}},
		{"Archive highest in a microsecond", "an append whose ID collided", qArchiveHighest, []any{"heavy@example.com", "mam", archiveID(777), archiveID(778)}},
		{"Archive Get", "retraction: find the entry", qArchiveGet, []any{"heavy@example.com", "mam", archiveID(777)}},
		{"Archive expire", "expiry by age across owners (BRIN on id)", qArchiveExpire, []any{"mam", archiveID(1000)}},
		{"Archive page before", "MAM paging backward (RSM before id): the page before the last one", qArchivePageLast, []any{"heavy@example.com", "mam", int64(0), archiveID(49950), 51}},
		{"Archive page with after", "MAM catch-up with one contact since the last known id (RSM after, with)", qArchivePageWith, []any{"heavy@example.com", "mam", archiveID(49000), int64(math.MaxInt64), "with3@example.net", 51}},
		{"Archive first", "MAM metadata (#extended): the oldest entry", qArchivePage, []any{"heavy@example.com", "mam", int64(0), int64(math.MaxInt64), 2}},
		{"Archive tombstone", "XEP-0424 retraction: the message becomes a tombstone", qArchiveUpdate, []any{"heavy@example.com", "mam", archiveID(777), []byte("<message/>")}},
		{"Archive delete one", "deleting one archived message", qArchiveDelete, []any{"heavy@example.com", "mam", archiveID(777)}},
		{"Archive delete owner", "a room's archive destroyed with the room", qArchiveDeleteOwner, []any{"user77@example.com", "mam"}},
		{"Archive delete before (owner)", "per-room retention", qArchiveDeleteBefore, []any{"user77@example.com", "mam", archiveID(1000)}},
		{"DeleteUser (store_items)", "account deletion", "DELETE FROM store_items WHERE owner = $1 OR (owner >= $2 AND owner < $3)", []any{"user77", lo, hi}},
		{"DeleteUser (archive_entries)", "account deletion", "DELETE FROM archive_entries WHERE owner = $1 OR (owner >= $2 AND owner < $3)", []any{"user77", lo, hi}},
		{"DeleteUser (roster)", "account deletion, per table", "DELETE FROM roster_items WHERE owner = $1 OR (owner >= $2 AND owner < $3)", []any{"user77", lo, hi}},
	}
}

var fillStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// archiveIDSQL is the archive ID of an entry g seconds after fillStart;
// archiveID is the same in Go.
const archiveIDSQL = `((extract(epoch from $1::timestamptz)::bigint + g) * 1000000) << 10`

func archiveID(g int) int64 {
	return storage.ArchiveIDAt(fillStart.Add(time.Duration(g) * time.Second))
}

// fill loads enough rows that the planner's choices are those of a real
// deployment: 20,000 users, 2,000 rosters of 20, offline queues, archives.
func fill(ctx context.Context, t *testing.T, s *Store) {
	stmts := []string{
		`INSERT INTO users (username, sha256_salt, sha256_iter) SELECT 'user' || g, '\x00', 4096 FROM generate_series(1, 20000) g`,
		`INSERT INTO roster_versions (owner, version) SELECT 'user' || g || '@example.com', 20 FROM generate_series(1, 2000) g`,
		`INSERT INTO roster_items (owner, contact, subscription)
			SELECT 'user' || o || '@example.com', 'contact' || c || '@example.net', (ARRAY['none','to','from','both'])[1 + (c % 4)]
			FROM generate_series(1, 2000) o, generate_series(1, 20) c`,
		`INSERT INTO offline (owner, stanza, stored)
			SELECT 'user' || (g % 2000) || '@example.com', '\x3c6d2f3e', $1::timestamptz + g * interval '1 second'
			FROM generate_series(1, 20000) g`,
		`INSERT INTO blocklist (owner, jid) SELECT 'user' || (g % 5000), 'spam' || g || '@example.net' FROM generate_series(1, 20000) g`,
		`INSERT INTO properties (name, value) SELECT 'prop' || g, 'v' FROM generate_series(1, 2000) g`,
		`INSERT INTO store_items (owner, store, coll, key, value)
			SELECT 'user' || g || '@example.com', s, '', k, '\x00' FROM generate_series(1, 20000) g,
			(VALUES ('vcard', ''), ('last', ''), ('private', 'storage storage:bookmarks')) AS v(s, k)`,
		`INSERT INTO store_items (owner, store, coll, key, value)
			SELECT 'user' || (g % 2000) || '@example.com', 'pep', 'node' || (g % 10), 'item' || g, '\x00' FROM generate_series(1, 100000) g`,
		`INSERT INTO archive_entries (owner, store, id, with_jid, value)
			SELECT 'user' || (g % 1000) || '@example.com', 'mam', ` + archiveIDSQL + `, 'with' || (g % 10) || '@example.net', '\x00'
			FROM generate_series(1, 100000) g`,
		`INSERT INTO archive_entries (owner, store, id, with_jid, value)
			SELECT 'heavy@example.com', 'mam', ` + archiveIDSQL + `, 'with' || (g % 20) || '@example.net', '\x00'
			FROM generate_series(1, 50000) g`,
		`ANALYZE`,
	}
	for _, q := range stmts {
		var err error
		if strings.Contains(q, "$1") {
			_, err = s.pool.Exec(ctx, q, fillStart)
		} else {
			_, err = s.pool.Exec(ctx, q)
		}
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestExplain checks every hot query is planned with an index on a filled
// database, and with -update-explain rewrites EXPLAIN.md from the plans.
func TestExplain(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Open(ctx, srv.NewSchema(t), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fill(ctx, t, s)

	var doc strings.Builder
	doc.WriteString("# EXPLAIN for the hot queries\n\n")
	doc.WriteString("Generated by `go test ./storage/postgres -run TestExplain -update-explain` on PostgreSQL " + srv.Version() + ",\n")
	doc.WriteString("against 20,000 users, 2,000 rosters of 20 items, 20,000 offline messages,\n")
	doc.WriteString("60,000 key/value entries, 100,000 map items (2,000 owners, 10 collections each)\n")
	doc.WriteString("and 150,000 archive entries (1,000 owners of 100 and one of 50,000), then\n")
	doc.WriteString("ANALYZE. The same test, without the flag, runs\n")
	doc.WriteString("in every `go test` and fails if any of these queries stops using an index.\n")
	doc.WriteString("The SQL is the store's own (storage/postgres/queries.go). A Bitmap Index Scan\n")
	doc.WriteString("is an index scan too: the planner picks it when a query returns several rows.\n")
	doc.WriteString("Costs vary by machine.\n")
	for _, q := range hotQueries() {
		t.Run(q.name, func(t *testing.T) {
			rows, err := s.pool.Query(ctx, "EXPLAIN "+q.sql, q.args...)
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if strings.Contains(text, "Seq Scan") {
				t.Errorf("%s uses a sequential scan:\n%s", q.name, text)
			}
			if !strings.Contains(text, "Index Scan") && !strings.Contains(text, "Index Only Scan") {
				t.Errorf("%s uses no index:\n%s", q.name, text)
			}
			fmt.Fprintf(&doc, "\n## %s\n\nUsed by: %s.\n\n```sql\n%s\n```\n\n```\n%s\n```\n", q.name, q.use, dedent(q.sql), text)
		})
	}
	if *updateExplain && !t.Failed() {
		if err := os.WriteFile("EXPLAIN.md", []byte(doc.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func dedent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimLeft(l, "\t")
	}
	return strings.Join(lines, "\n")
}
