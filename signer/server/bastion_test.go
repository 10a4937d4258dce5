package server

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/bastionauth"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/signer/ca"
)

// bastionID is a bastion's host key and certificate.
type bastionID struct {
	key  ssh.Signer
	cert *ssh.Certificate
}

func newBastion(t *testing.T, hostCA *ca.Authority, names ...string) bastionID {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewSignerFromKey(priv)
	cert, err := hostCA.SignHost(key.PublicKey(), names, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return bastionID{key: key, cert: cert}
}

// post sends a bastion request signed by signWith (nil: unsigned).
func (e *env) postBastion(t *testing.T, path string, req any, signWith ssh.Signer) (int, api.CertResponse, string) {
	t.Helper()
	body, _ := json.Marshal(req)
	hr, _ := http.NewRequest(http.MethodPost, e.url+path, bytes.NewReader(body))
	if signWith != nil {
		sig, err := bastionauth.Sign(signWith, body)
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set(bastionauth.Header, sig)
	}
	resp, err := e.http.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	var out api.CertResponse
	var apiErr api.Error
	_ = json.Unmarshal(raw, &out)
	_ = json.Unmarshal(raw, &apiErr)
	return resp.StatusCode, out, apiErr.Error
}

func delegateReq(b bastionID, person *ssh.Certificate, login string, key ssh.PublicKey) api.DelegateRequest {
	env := bastionauth.NewEnvelope(b.cert, time.Now())
	return api.DelegateRequest{BastionCert: env.BastionCert, Timestamp: env.Timestamp, Nonce: env.Nonce,
		PersonCert: pubLine(person), Login: login, Node: "node1", PublicKey: pubLine(key), SessionID: "s-1"}
}

func TestDelegatedCertificate(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	hostCA, _ := ca.Load(e.cfg.Signer.HostCAKey)
	userCA, _ := ca.Load(e.cfg.Signer.UserCAKey)
	otherCA, _ := ca.New(newBastion(t, hostCA, "x").key) // any key will do as a foreign CA

	bastion := newBastion(t, hostCA, "postern-bastion", "127.0.0.1")
	personKey := newKey(t)
	alice, _ := userCA.SignUser(ca.UserCert{Key: personKey, KeyID: "alice@example.com", Principals: []string{"ubuntu", "root"}, TTL: time.Hour,
		Extensions: map[string]string{"permit-pty": "", sshcert.ExtRoles: "infra"}})
	connKey := newKey(t)

	status, out, msg := e.postBastion(t, api.PathDelegate, delegateReq(bastion, alice, "ubuntu", connKey), bastion.key)
	if status != http.StatusOK {
		t.Fatalf("delegate: %d %s", status, msg)
	}
	c := parseCert(t, out.Certificate)
	if c.KeyId != "alice@example.com" || strings.Join(c.ValidPrincipals, ",") != "ubuntu" ||
		!bytes.Equal(c.Key.Marshal(), connKey.Marshal()) || c.Extensions[sshcert.ExtViaBastion] != "postern-bastion" ||
		c.Extensions[sshcert.ExtRoles] != "infra" {
		t.Fatalf("delegated cert %+v", c)
	}
	if life := time.Duration(c.ValidBefore-c.ValidAfter) * time.Second; life > 2*time.Minute+time.Second {
		t.Fatalf("delegated cert lives %v, want about a minute", life)
	}
	if ev := e.audit.named(audit.CertDelegated); len(ev) != 1 || ev[0].Person != "alice@example.com" || ev[0].SessionID != "s-1" {
		t.Fatalf("cert.delegated: %+v", ev)
	}

	expired, _ := userCA.SignUser(ca.UserCert{Key: personKey, KeyID: "alice@example.com", Principals: []string{"ubuntu"}, TTL: time.Second})
	time.Sleep(1100 * time.Millisecond)
	foreign, _ := otherCA.SignUser(ca.UserCert{Key: personKey, KeyID: "alice@example.com", Principals: []string{"ubuntu"}, TTL: time.Hour})
	hostAsPerson, _ := userCA.SignHost(personKey, []string{"ubuntu"}, time.Hour)
	stranger := newBastion(t, hostCA, "somebody-else")
	notHostCA := bastionID{key: bastion.key}
	notHostCA.cert, _ = userCA.SignHost(bastion.key.PublicKey(), []string{"postern-bastion"}, time.Hour)
	replay := delegateReq(bastion, alice, "ubuntu", connKey)
	e.postBastion(t, api.PathDelegate, replay, bastion.key)
	stale := delegateReq(bastion, alice, "ubuntu", connKey)
	stale.Timestamp -= 600

	for _, tc := range []struct {
		name   string
		req    api.DelegateRequest
		signer ssh.Signer
		status int
	}{
		{"unsigned", delegateReq(bastion, alice, "ubuntu", connKey), nil, http.StatusUnauthorized},
		{"signed by another key", delegateReq(bastion, alice, "ubuntu", connKey), stranger.key, http.StatusUnauthorized},
		{"not a listed bastion", delegateReq(stranger, alice, "ubuntu", connKey), stranger.key, http.StatusUnauthorized},
		{"bastion cert not from the host CA", delegateReq(notHostCA, alice, "ubuntu", connKey), bastion.key, http.StatusUnauthorized},
		{"replayed request", replay, bastion.key, http.StatusUnauthorized},
		{"stale request", stale, bastion.key, http.StatusUnauthorized},
		{"login not in the person's certificate", delegateReq(bastion, alice, "postgres", connKey), bastion.key, http.StatusForbidden},
		{"expired person certificate", delegateReq(bastion, expired, "ubuntu", connKey), bastion.key, http.StatusForbidden},
		{"person certificate from another CA", delegateReq(bastion, foreign, "ubuntu", connKey), bastion.key, http.StatusForbidden},
		{"host certificate as the person's", delegateReq(bastion, hostAsPerson, "ubuntu", connKey), bastion.key, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out, msg := e.postBastion(t, api.PathDelegate, tc.req, tc.signer)
			if status != tc.status || out.Certificate != "" {
				t.Fatalf("status %d (%s), want %d", status, msg, tc.status)
			}
		})
	}

	// A revoked person gets nothing, even with a certificate still valid.
	if st, _ := e.revoke(t, "admin-token-1", api.RevokeRequest{KeyID: "alice@example.com", Reason: "left the company"}); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	if status, _, msg := e.postBastion(t, api.PathDelegate, delegateReq(bastion, alice, "ubuntu", connKey), bastion.key); status != http.StatusForbidden || !strings.Contains(msg, "revoked") {
		t.Fatalf("revoked person: %d %s", status, msg)
	}
	if n := len(e.audit.named(audit.CertDelegated)); n != 2 {
		t.Fatalf("%d delegations issued, want the 2 legitimate ones", n)
	}
}

func TestNodeHostCert(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	hostCA, _ := ca.Load(e.cfg.Signer.HostCAKey)
	bastion := newBastion(t, hostCA, "postern-bastion")
	key := newKey(t)
	req := func(b bastionID, hosts ...string) api.NodeHostCertRequest {
		env := bastionauth.NewEnvelope(b.cert, time.Now())
		return api.NodeHostCertRequest{BastionCert: env.BastionCert, Timestamp: env.Timestamp, Nonce: env.Nonce, PublicKey: pubLine(key), Hosts: hosts}
	}
	status, out, msg := e.postBastion(t, api.PathNodeHostCert, req(bastion, "node1", "10.0.0.5"), bastion.key)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, msg)
	}
	c := parseCert(t, out.Certificate)
	if c.CertType != ssh.HostCert || strings.Join(c.ValidPrincipals, ",") != "node1,10.0.0.5" {
		t.Fatalf("cert %+v", c)
	}
	if status, _, _ := e.postBastion(t, api.PathNodeHostCert, req(newBastion(t, hostCA, "intruder"), "node1"), bastion.key); status != http.StatusUnauthorized {
		t.Fatalf("non-bastion: %d", status)
	}
	if status, _, _ := e.postBastion(t, api.PathNodeHostCert, req(bastion, "*.internal"), bastion.key); status != http.StatusBadRequest {
		t.Fatalf("wildcard: %d", status)
	}
}

// The signer remembers the signatures of the certificates bastions send
// (sshcert.SigCache); a remembered certificate must still expire, and a
// person revoked after a delegation must still be refused.
func TestDelegateCachedCertificatesStillChecked(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	s := newDirectSigner(t, now)
	h := s.srv.Handler()
	short, err := s.srv.userCA.SignUser(ca.UserCert{Key: newKey(t), KeyID: "bob@example.com", Principals: []string{"ubuntu"}, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s.person = pubLine(short)
	send := func() (int, string) {
		p := s.requests(t, 1)[0]
		r := httptest.NewRequest(http.MethodPost, api.PathDelegate, bytes.NewReader(p.body))
		r.Header.Set(bastionauth.Header, p.sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	for i := range 3 {
		if code, body := send(); code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	// Two certificates, each verified once and remembered for the next two uses.
	if st := s.srv.sigs.Stats(); st.Misses != 2 || st.Hits != 4 {
		t.Fatalf("signature cache %+v, want 2 misses and 4 hits", st)
	}
	clock.Add(11 * 60)
	if code, body := send(); code != http.StatusForbidden || !strings.Contains(body, "expired") {
		t.Fatalf("expired person certificate (signature cached): %d %s", code, body)
	}
	clock.Add(2 * 3600)
	if code, body := send(); code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("expired bastion certificate (signature cached): %d %s", code, body)
	}
	if st := s.srv.sigs.Stats(); st.Misses != 2 {
		t.Fatalf("signature cache %+v: the refusals must come from the validity checks, not from new verifications", st)
	}
}
