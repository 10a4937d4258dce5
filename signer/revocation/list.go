package revocation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/krl"
)

// FormatVersion is the version of the file format written by this package.
const FormatVersion = 1

// Errors for policy decisions.
var (
	// ErrRevoked is returned by List.Refuses.
	ErrRevoked = errors.New("access has been revoked")
	// ErrNotRevoked is returned by List.Remove for a target not on the list.
	ErrNotRevoked = errors.New("not on the revocation list")
	// ErrInvalid wraps every problem with an entry or a list.
	ErrInvalid = errors.New("invalid revocation")
)

// List is the revocation list.
type List struct {
	// Format is FormatVersion.
	Format int `json:"format"`
	// Generation grows by one with every change.
	Generation uint64 `json:"generation"`
	// Updated is the time of the last change.
	Updated time.Time `json:"updated"`
	Entries []Entry   `json:"entries"`
}

// Entry is one revocation. Kind is one of api.RevokeSerial,
// api.RevokeKeyID and api.RevokeKey.
type Entry struct {
	Kind string `json:"kind"`
	// CA (authorized_keys format) issued the certificates revoked by
	// serial or key ID.
	CA     string `json:"ca,omitempty"`
	Serial uint64 `json:"serial,omitempty"`
	KeyID  string `json:"key_id,omitempty"`
	// PublicKey (authorized_keys format) and KeyFP for a revoked key.
	PublicKey string    `json:"public_key,omitempty"`
	KeyFP     string    `json:"key_fp,omitempty"`
	Reason    string    `json:"reason"`
	By        string    `json:"by"`
	Time      time.Time `json:"time"`
}

// NewSerial revokes the certificate of ca with serial.
func NewSerial(ca ssh.PublicKey, serial uint64) Entry {
	return Entry{Kind: api.RevokeSerial, CA: authorizedKey(ca), Serial: serial}
}

// NewKeyID revokes every certificate of ca with keyID.
func NewKeyID(ca ssh.PublicKey, keyID string) Entry {
	return Entry{Kind: api.RevokeKeyID, CA: authorizedKey(ca), KeyID: keyID}
}

// NewKey revokes a plain key.
func NewKey(pub ssh.PublicKey) Entry {
	return Entry{Kind: api.RevokeKey, PublicKey: authorizedKey(pub), KeyFP: ssh.FingerprintSHA256(pub)}
}

func authorizedKey(k ssh.PublicKey) string {
	if k == nil {
		return ""
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// Target names what e revokes, e.g. `key id "alice@example.com"`.
func (e Entry) Target() string {
	switch e.Kind {
	case api.RevokeSerial:
		return fmt.Sprintf("serial %d", e.Serial)
	case api.RevokeKeyID:
		return fmt.Sprintf("key id %q", e.KeyID)
	case api.RevokeKey:
		return "key " + e.KeyFP
	}
	return "unknown revocation " + e.Kind
}

// identity is what makes two entries the same revocation.
func (e Entry) identity() string {
	ca := ""
	if pub, err := parseKey(e.CA); err == nil {
		ca = ssh.FingerprintSHA256(pub)
	}
	switch e.Kind {
	case api.RevokeSerial:
		return fmt.Sprintf("serial\x00%s\x00%d", ca, e.Serial)
	case api.RevokeKeyID:
		return "key_id\x00" + ca + "\x00" + e.KeyID
	default:
		return "key\x00" + e.KeyFP
	}
}

// Validate checks one entry; reason and time are not checked here.
func (e Entry) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, e.Target(), fmt.Sprintf(format, args...))
	}
	switch e.Kind {
	case api.RevokeSerial, api.RevokeKeyID:
		ca, err := parseKey(e.CA)
		if err != nil {
			return bad("CA key: %v", err)
		}
		if _, isCert := ca.(*ssh.Certificate); isCert {
			return bad("CA key is a certificate")
		}
		if e.Kind == api.RevokeSerial && e.Serial == 0 {
			return bad("serial 0 cannot be revoked")
		}
		if e.Kind == api.RevokeKeyID {
			if err := CheckKeyID(e.KeyID); err != nil {
				return bad("%v", err)
			}
		}
	case api.RevokeKey:
		pub, err := parseKey(e.PublicKey)
		if err != nil {
			return bad("public key: %v", err)
		}
		if _, isCert := pub.(*ssh.Certificate); isCert {
			return bad("a certificate is not a plain key (revoke its serial instead)")
		}
		if fp := ssh.FingerprintSHA256(pub); fp != e.KeyFP {
			return bad("fingerprint %s does not match the key (%s)", e.KeyFP, fp)
		}
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrInvalid, e.Kind)
	}
	return nil
}

// CheckKeyID refuses key IDs that cannot be revoked or are surely typos.
func CheckKeyID(id string) error {
	if id == "" {
		return errors.New("empty key id")
	}
	if strings.TrimSpace(id) != id {
		return fmt.Errorf("key id %q has leading or trailing spaces", id)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("key id %q contains a control character", id)
		}
	}
	return nil
}

func parseKey(s string) (ssh.PublicKey, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	return pub, err
}

// Validate checks the whole list.
func (l *List) Validate() error {
	var errs []error
	if l.Format != FormatVersion && !(l.Format == 0 && l.Generation == 0 && len(l.Entries) == 0) {
		errs = append(errs, fmt.Errorf("%w: file format %d, want %d", ErrInvalid, l.Format, FormatVersion))
	}
	seen := map[string]bool{}
	for _, e := range l.Entries {
		if err := e.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if id := e.identity(); seen[id] {
			errs = append(errs, fmt.Errorf("%w: %s listed twice", ErrInvalid, e.Target()))
		} else {
			seen[id] = true
		}
	}
	return errors.Join(errs...)
}

// Find returns the entry revoking the same thing as e.
func (l *List) Find(e Entry) (Entry, bool) {
	id := e.identity()
	for _, x := range l.Entries {
		if x.identity() == id {
			return x, true
		}
	}
	return Entry{}, false
}

// Add appends e unless the same revocation is there; it reports whether the
// list changed and returns the entry on the list.
func (l *List) Add(e Entry) (Entry, bool, error) {
	if err := e.Validate(); err != nil {
		return Entry{}, false, err
	}
	if old, ok := l.Find(e); ok {
		return old, false, nil
	}
	l.Entries = append(l.Entries, e)
	return e, true, nil
}

// Remove deletes the revocation of the same thing as e.
func (l *List) Remove(e Entry) (Entry, error) {
	id := e.identity()
	for i, x := range l.Entries {
		if x.identity() == id {
			l.Entries = slices.Delete(l.Entries, i, i+1)
			return x, nil
		}
	}
	return Entry{}, fmt.Errorf("%s: %w", e.Target(), ErrNotRevoked)
}

// Refuses returns an error wrapping ErrRevoked if a certificate for pub
// with keyID must not be issued: the key ID (under any CA) or the key is
// revoked.
func (l *List) Refuses(keyID string, pub ssh.PublicKey) error {
	fp := ""
	if pub != nil {
		fp = ssh.FingerprintSHA256(pub)
	}
	for _, e := range l.Entries {
		switch {
		case e.Kind == api.RevokeKeyID && e.KeyID == keyID:
			return fmt.Errorf("%w: key id %q was revoked at %s", ErrRevoked, keyID, e.Time.UTC().Format(time.RFC3339))
		case e.Kind == api.RevokeKey && fp != "" && e.KeyFP == fp:
			return fmt.Errorf("%w: key %s was revoked at %s", ErrRevoked, fp, e.Time.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// KRL returns the list as an OpenSSH KRL: version = generation, date = last
// change.
func (l *List) KRL() (*krl.KRL, error) {
	k := &krl.KRL{Version: l.Generation, Comment: fmt.Sprintf("postern revocation list, generation %d", l.Generation)}
	if !l.Updated.IsZero() && l.Updated.Unix() > 0 {
		k.GeneratedDate = uint64(l.Updated.Unix())
	}
	for _, e := range l.Entries {
		if err := e.Validate(); err != nil {
			return nil, err
		}
		switch e.Kind {
		case api.RevokeSerial:
			ca, _ := parseKey(e.CA)
			k.RevokeSerial(ca, e.Serial)
		case api.RevokeKeyID:
			ca, _ := parseKey(e.CA)
			k.RevokeKeyID(ca, e.KeyID)
		case api.RevokeKey:
			pub, _ := parseKey(e.PublicKey)
			k.RevokeKey(pub)
		}
	}
	return k, nil
}

// Wire returns the list for GET /v1/revocations; full adds reasons and
// who revoked.
func (l *List) Wire(full bool) api.RevocationList {
	out := api.RevocationList{Generation: l.Generation, Updated: l.Updated, Revocations: []api.Revocation{}}
	for _, e := range l.Entries {
		r := api.Revocation{Kind: e.Kind, CA: e.CA, Serial: e.Serial, KeyID: e.KeyID, PublicKey: e.PublicKey, KeyFP: e.KeyFP, Time: e.Time}
		if full {
			r.Reason, r.By = e.Reason, e.By
		}
		out.Revocations = append(out.Revocations, r)
	}
	return out
}

// WireEntry converts one entry with its reason and author.
func WireEntry(e Entry) api.Revocation {
	l := List{Entries: []Entry{e}}
	return l.Wire(true).Revocations[0]
}

// hashOf returns a short hex digest for ETags.
func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Apply revokes e.Target() (undo false) or removes its revocation (undo
// true) in store. It returns the entry added, found or removed, the list
// after the change, and whether the list changed (a repeated revocation
// does not change it; undoing a target that is not revoked is
// ErrNotRevoked).
func Apply(ctx context.Context, store Store, e Entry, undo bool, now time.Time) (Entry, *List, bool, error) {
	if err := e.Validate(); err != nil {
		return Entry{}, nil, false, err
	}
	var result Entry
	var changed bool
	l, err := store.Update(ctx, now, func(l *List) (bool, error) {
		var err error
		if undo {
			result, err = l.Remove(e)
			changed = err == nil
		} else {
			result, changed, err = l.Add(e)
		}
		return changed, err
	})
	if err != nil {
		return Entry{}, nil, false, err
	}
	return result, l, changed, nil
}
