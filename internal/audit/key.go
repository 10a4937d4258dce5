package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// LoadOrCreateKey reads the writer's Ed25519 audit key, an OpenSSH private
// key file. When the file does not exist it generates one (mode 0600) and
// writes its public half next to it as path+".pub" (mode 0644): that public
// key is what an auditor trusts. Two processes creating it at once end up
// with the same key.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := createKey(path); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	return parseKey(path, b)
}

// LoadKey reads the writer's Ed25519 audit key without creating it.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	return parseKey(path, b)
}

func parseKey(path string, b []byte) (ed25519.PrivateKey, error) {
	raw, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse audit key %s: %w", path, err)
	}
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		return *k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("parse audit key %s: %T is not an Ed25519 key", path, raw)
}

func createKey(path string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate audit key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "postern audit key")
	if err != nil {
		return fmt.Errorf("encode audit key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create audit key dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".audit_key-*")
	if err != nil {
		return fmt.Errorf("create audit key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(pem.EncodeToMemory(blk)); err != nil {
		tmp.Close()
		return fmt.Errorf("write audit key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write audit key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write audit key: %w", err)
	}
	// Link, not rename: it fails when another process got there first, and
	// then its key wins.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return fmt.Errorf("create audit key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("encode audit public key: %w", err)
	}
	line := bytes.TrimSpace(ssh.MarshalAuthorizedKey(sshPub))
	line = append(line, []byte(" postern audit key\n")...)
	if err := os.WriteFile(path+".pub", line, 0o644); err != nil {
		return fmt.Errorf("write audit public key: %w", err)
	}
	return nil
}

// PublicKeyLine is the key's public half as an authorized_keys line, the
// form --pubkey files hold.
func PublicKeyLine(k ed25519.PrivateKey, comment string) string {
	p, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		panic(err) // an ed25519.PublicKey always converts
	}
	s := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p)))
	if comment != "" {
		s += " " + comment
	}
	return s
}

// Fingerprint is the SHA256 fingerprint of an Ed25519 public key, as
// ssh-keygen -l prints it ("SHA256:…").
func Fingerprint(pub ed25519.PublicKey) string {
	p, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return ssh.FingerprintSHA256(p)
}

// KeySet is the audit public keys an auditor trusts, by fingerprint.
type KeySet map[string]ed25519.PublicKey

// ParsePublicKeys reads authorized_keys-style lines (ssh-ed25519 AAAA…
// [comment]); blank lines and # comments are skipped.
func ParsePublicKeys(data []byte) (KeySet, error) {
	ks := KeySet{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		l := bytes.TrimSpace(sc.Bytes())
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(l)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		cp, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return nil, fmt.Errorf("line %d: not an Ed25519 key", n)
		}
		ed, ok := cp.CryptoPublicKey().(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("line %d: %s is not an Ed25519 key", n, pub.Type())
		}
		ks[ssh.FingerprintSHA256(pub)] = ed
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ks) == 0 {
		return nil, errors.New("no public key found")
	}
	return ks, nil
}

// ReadPublicKeys reads a file of trusted audit public keys (ParsePublicKeys).
func ReadPublicKeys(path string) (KeySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit public keys: %w", err)
	}
	ks, err := ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("parse audit public keys %s: %w", path, err)
	}
	return ks, nil
}

// SignedMessage is the exact byte string a checkpoint's signature covers:
// the JSON array
//
//	["postern-audit-checkpoint-v1", writer, writer_id, seq, time,
//	 from, to, count, hash, reason, key]
//
// where seq is the checkpoint event's own seq and time its "time" field as
// written (RFC 3339).
func SignedMessage(e *Event) []byte {
	c := e.Checkpoint
	if c == nil {
		c = &Checkpoint{}
	}
	b, err := json.Marshal([]any{"postern-audit-checkpoint-v1", e.Writer, e.WriterID, e.Seq,
		e.Time.Format(timeFormat), c.From, c.To, c.Count, c.Hash, c.Reason, c.Key})
	if err != nil {
		panic(err) // strings and numbers always encode
	}
	return b
}

// timeFormat is how encoding/json writes a time.Time.
const timeFormat = "2006-01-02T15:04:05.999999999Z07:00"
