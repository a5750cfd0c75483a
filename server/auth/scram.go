package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/aviary-im/aviary/storage"
)

// scramExchange is the server side of SCRAM (RFC 5802, RFC 7677), with
// channel binding for the -PLUS variants (channel.go). Unknown users get a
// deterministic fake salt and fail at the final step exactly like a wrong
// password.
type scramExchange struct {
	a    *Authenticator
	h    func() hash.Hash
	sha1 bool
	addr string // the client's address, for the account throttle
	// plus is set for a -PLUS mechanism; bindings are the stream's (what
	// was offered), cbData the binding the client chose.
	plus     bool
	bindings Bindings
	cbData   []byte

	step int

	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string
	username        string
	cred            storage.SCRAM
	known           bool
	// locked: an administrator locked the account (told only to a
	// client that proved the password).
	locked bool
}

func newSCRAMExchange(a *Authenticator, mech string) *scramExchange {
	plus := isPlus(mech)
	if mech == MechSCRAMSHA1 || mech == MechSCRAMSHA1Plus {
		return &scramExchange{a: a, h: sha1.New, sha1: true, plus: plus}
	}
	return &scramExchange{a: a, h: sha256.New, plus: plus}
}

func (x *scramExchange) Username() string { return x.username }

func (x *scramExchange) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	switch x.step {
	case 0:
		x.step++
		out, err := x.first(ctx, string(in))
		return out, false, err
	case 1:
		x.step++
		out, err := x.final(string(in))
		if err != nil {
			return nil, false, err
		}
		return out, true, nil
	}
	return nil, false, fail(CondMalformedRequest, errors.New("scram: unexpected step"))
}

func (x *scramExchange) first(ctx context.Context, msg string) ([]byte, error) {
	if msg == "" {
		return nil, fail(CondMalformedRequest, errors.New("scram: empty client-first-message"))
	}
	// gs2-header: cbflag "," [authzid] ","
	cb, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return nil, fail(CondMalformedRequest, errors.New("scram: no gs2 header"))
	}
	if err := x.channelBinding(cb); err != nil {
		return nil, err
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fail(CondMalformedRequest, errors.New("scram: truncated gs2 header"))
	}
	var authzid string
	if authz != "" {
		if !strings.HasPrefix(authz, "a=") {
			return nil, fail(CondMalformedRequest, errors.New("scram: bad authzid"))
		}
		var err error
		if authzid, err = decodeSASLName(authz[2:]); err != nil {
			return nil, fail(CondMalformedRequest, err)
		}
	}
	x.gs2Header = msg[:len(msg)-len(bare)]
	x.clientFirstBare = bare
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || strings.HasPrefix(attrs[0], "m=") {
		return nil, fail(CondMalformedRequest, errors.New("scram: bad client-first-message-bare"))
	}
	if !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") || len(attrs[1]) < 3 {
		return nil, fail(CondMalformedRequest, errors.New("scram: missing n= or r="))
	}
	name, err := decodeSASLName(attrs[0][2:])
	if err != nil {
		return nil, fail(CondMalformedRequest, err)
	}
	cnonce := attrs[1][2:]
	if !printable(cnonce) {
		return nil, fail(CondMalformedRequest, errors.New("scram: bad nonce"))
	}
	user, err := x.a.normalizeUsername(name)
	if err != nil {
		// Not a valid localpart: cannot exist. Look like an unknown user.
		user = name
	}
	if authzid != "" && !x.a.authzidMatches(authzid, user) {
		return nil, fail(CondInvalidAuthzid, fmt.Errorf("scram: authzid %q for %q", authzid, user))
	}
	x.username = user
	// The turn on an account that failed too often is taken here, before
	// the salt goes out: the proof that follows is the guess.
	if werr := x.a.waitAccount(ctx, user, x.addr); werr != nil {
		return nil, fail(CondTemporaryAuthFailure, werr)
	}
	if err == nil {
		u, lerr := x.a.store.GetUser(ctx, user)
		switch {
		case lerr == nil:
			x.cred = u.Credentials.SHA256
			if x.sha1 {
				x.cred = u.Credentials.SHA1
			}
			x.known = len(x.cred.Salt) > 0 && len(x.cred.StoredKey) > 0
			x.locked = u.Locked()
		case errors.Is(lerr, storage.ErrNotFound):
		default:
			return nil, fail(CondTemporaryAuthFailure, lerr)
		}
	}
	if !x.known {
		x.cred = x.a.fakeCredential(x.sha1, user)
	}
	var nb [18]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, fail(CondTemporaryAuthFailure, err)
	}
	x.nonce = cnonce + base64.RawStdEncoding.EncodeToString(nb[:])
	x.serverFirst = "r=" + x.nonce + ",s=" + base64.StdEncoding.EncodeToString(x.cred.Salt) + ",i=" + strconv.Itoa(x.cred.Iterations)
	return []byte(x.serverFirst), nil
}

func (x *scramExchange) final(msg string) ([]byte, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return nil, fail(CondMalformedRequest, errors.New("scram: no proof"))
	}
	withoutProof := msg[:i]
	proof, err := base64.StdEncoding.DecodeString(msg[i+3:])
	if err != nil {
		return nil, fail(CondIncorrectEncoding, err)
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, fail(CondMalformedRequest, errors.New("scram: bad client-final-message"))
	}
	cbind, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil {
		return nil, fail(CondIncorrectEncoding, err)
	}
	// With 'p' the client's view of the TLS connection follows the
	// header; a man in the middle's connection gives other data.
	want := x.gs2Header + string(x.cbData)
	if subtle.ConstantTimeCompare(cbind, []byte(want)) != 1 {
		return nil, fail(CondNotAuthorized, errors.New("scram: channel binding data mismatch"))
	}
	if attrs[1][2:] != x.nonce {
		return nil, fail(CondNotAuthorized, errors.New("scram: nonce mismatch"))
	}
	authMessage := x.clientFirstBare + "," + x.serverFirst + "," + withoutProof
	sig := hmacSum(x.h, x.cred.StoredKey, authMessage)
	if len(proof) != len(sig) {
		return nil, fail(CondNotAuthorized, errors.New("scram: bad proof length"))
	}
	clientKey := make([]byte, len(sig))
	for i := range sig {
		clientKey[i] = proof[i] ^ sig[i]
	}
	sum := x.h()
	sum.Write(clientKey)
	ok := hmac.Equal(sum.Sum(nil), x.cred.StoredKey)
	if !ok || !x.known {
		x.a.accountFailed(x.username)
		return nil, fail(CondNotAuthorized, errors.New("scram: wrong password or unknown user"))
	}
	x.a.accountSucceeded(x.username)
	if x.locked {
		return nil, fail(CondAccountDisabled, errLocked)
	}
	serverSig := hmacSum(x.h, x.cred.ServerKey, authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), nil
}

// channelBinding checks the gs2 channel-binding flag (RFC 5802 §6, §7)
// against the mechanism and the stream, and keeps the binding data the
// client chose. Failures here are negotiation errors, not wrong
// passwords: malformed-request, as Prosody answers, so that a client
// that guessed a binding type wrong (slixmpp sends tls-unique on TLS 1.3)
// is not throttled for trying the next mechanism.
func (x *scramExchange) channelBinding(cb string) error {
	switch {
	case cb == "n":
		// The client cannot bind. Nothing to check unless it chose -PLUS.
		if x.plus {
			return fail(CondMalformedRequest, errors.New("scram: -PLUS without channel binding"))
		}
	case cb == "y":
		// The client can bind but believes the server cannot. This server
		// offered -PLUS on this stream: someone in between removed it.
		if x.plus {
			return fail(CondMalformedRequest, errors.New("scram: -PLUS with gs2 flag y"))
		}
		if len(x.bindings.Types()) > 0 {
			return fail(CondMalformedRequest, errors.New("scram: client thinks the server cannot bind, but -PLUS was offered (downgrade)"))
		}
	case strings.HasPrefix(cb, "p="):
		typ := cb[2:]
		if !x.plus {
			return fail(CondMalformedRequest, errors.New("scram: channel binding asked for without -PLUS"))
		}
		if !x.bindings.Has(typ) {
			return fail(CondMalformedRequest, fmt.Errorf("scram: channel binding type %q not offered on this stream", typ))
		}
		x.cbData = x.bindings[typ]
	default:
		return fail(CondMalformedRequest, errors.New("scram: bad cbflag"))
	}
	return nil
}

// decodeSASLName undoes the =2C and =3D escapes of RFC 5802 §5.1.
func decodeSASLName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 > len(s) {
			return "", errors.New("scram: bad escape in name")
		}
		switch s[i+1 : i+3] {
		case "2C":
			b.WriteByte(',')
		case "3D":
			b.WriteByte('=')
		default:
			return "", errors.New("scram: bad escape in name")
		}
		i += 2
	}
	return b.String(), nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}
