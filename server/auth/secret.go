package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/aviary-im/aviary/storage"
)

// FakeSaltKeyProperty is the store property that keys the fake SCRAM
// salts of unknown users when no cluster secret is configured.
const FakeSaltKeyProperty = "auth.fake_salt_key"

// FakeSaltKey returns the key of unknown users' fake SCRAM salts. It must
// be the same on every node and after every restart: a real user's salt
// never changes, so a salt that differs between two nodes, or before and
// after a restart, would tell an unknown user from a real one. It is
// derived from the cluster secret when one is set (every node of a
// cluster has it), and otherwise created once in the store's properties,
// which every node on the store reads: the first node to start stores
// it, and a node racing it gets the stored one.
func FakeSaltKey(ctx context.Context, clusterSecret string, props storage.PropertyCreator) ([]byte, error) {
	if clusterSecret != "" {
		return hmacSum(sha256.New, []byte(clusterSecret), "aviary: SCRAM fake salts"), nil
	}
	var fresh [32]byte
	if _, err := rand.Read(fresh[:]); err != nil {
		return nil, err
	}
	v, err := props.CreateProperty(ctx, FakeSaltKeyProperty, hex.EncodeToString(fresh[:]))
	if err != nil {
		return nil, fmt.Errorf("auth: storing the fake salt key: %w", err)
	}
	key, err := hex.DecodeString(v)
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("auth: property %s is not a hex key of at least 16 bytes", FakeSaltKeyProperty)
	}
	return key, nil
}
