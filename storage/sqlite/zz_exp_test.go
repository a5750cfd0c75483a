package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
)

func BenchmarkExpCtx(b *testing.B) {
	s := open(&testing.T{}, filepath.Join(b.TempDir(), "a.db"))
	defer s.Close()
	ctx := context.Background()
	s.CreateUser(ctx, storage.User{Username: "alice"})
	b.Run("bg", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GetUser(ctx, "alice"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("timeout", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, cancel := context.WithTimeout(ctx, time.Second)
			if _, err := s.GetUser(c, "alice"); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	})
}
