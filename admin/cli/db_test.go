package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/storage/sqlite"
)

func TestDBCommand(t *testing.T) {
	pg := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := strings.Replace(pg.URL(), "postgres@", "postgres:secret@", 1)
	env := []string{"AVIARY_DATABASE=" + url, "AVIARY_DATA_DIR=" + t.TempDir()}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runDB(ctx, args, env, &out, &errb)
		return code, out.String(), errb.String()
	}
	// The schema grows with new migrations; the test follows the list.
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	last := ms[len(ms)-1].Version
	steps := []struct {
		name     string
		args     []string
		code     int
		contains []string
		absent   []string
	}{
		{"no args", nil, 2, nil, nil},
		{"unknown", []string{"drop"}, 2, nil, nil},
		{"extra arg", []string{"status", "x"}, 2, nil, nil},
		{"status before", []string{"status"}, exitPending, []string{"0001_init", "pending", fmt.Sprintf("%d migration(s) pending", len(ms))}, []string{"secret"}},
		{"migrate", []string{"migrate"}, 0, []string{fmt.Sprintf("applied migration %d", last), "applied", "schema: up to date"}, []string{"pending"}},
		{"migrate again", []string{"migrate"}, 0, []string{"nothing to apply", "schema: up to date"}, nil},
		{"status after", []string{"status"}, 0, []string{"0001_init", "applied", "schema: up to date"}, []string{"pending", "secret"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, out, errs := run(st.args...)
			if code != st.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, st.code, out, errs)
			}
			for _, c := range st.contains {
				if !strings.Contains(out, c) {
					t.Errorf("stdout lacks %q:\n%s", c, out)
				}
			}
			for _, a := range st.absent {
				if strings.Contains(out+errs, a) {
					t.Errorf("output contains %q:\n%s%s", a, out, errs)
				}
			}
		})
	}
}

func TestDBCommandEmbedded(t *testing.T) {
	dir := t.TempDir()
	env := []string{"AVIARY_DATA_DIR=" + dir}
	ctx := context.Background()
	var out, errb bytes.Buffer
	if code := runDB(ctx, []string{"status"}, env, &out, &errb); code != exitPending || !strings.Contains(out.String(), "no database yet") {
		t.Fatalf("status on no database: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	ms, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	version := fmt.Sprintf("version %d", ms[len(ms)-1].Version)
	if code := runDB(ctx, []string{"migrate"}, env, &out, &errb); code != 0 || !strings.Contains(out.String(), version) {
		t.Fatalf("migrate: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), filepath.Join(dir, "aviary.db")) {
		t.Fatalf("output does not name the file:\n%s", out.String())
	}
	out.Reset()
	if code := runDB(ctx, []string{"status"}, env, &out, &errb); code != 0 || !strings.Contains(out.String(), "up to date") {
		t.Fatalf("status: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
