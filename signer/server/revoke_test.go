package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/krl"
)

func (e *env) revoke(t *testing.T, token string, req api.RevokeRequest) (int, api.RevokeResponse) {
	t.Helper()
	body, _ := json.Marshal(req)
	hr, _ := http.NewRequest(http.MethodPost, e.url+api.PathRevoke, strings.NewReader(string(body)))
	if token != "" {
		hr.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.http.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out api.RevokeResponse
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (e *env) get(t *testing.T, path, token, etag string) (*http.Response, []byte) {
	t.Helper()
	hr, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	if token != "" {
		hr.Header.Set("Authorization", "Bearer "+token)
	}
	if etag != "" {
		hr.Header.Set("If-None-Match", etag)
	}
	resp, err := e.http.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// fakeCert is enough for KRL checks, which do not verify signatures.
func fakeCert(ca ssh.PublicKey, key ssh.PublicKey, keyID string, serial uint64) *ssh.Certificate {
	return &ssh.Certificate{Key: key, KeyId: keyID, Serial: serial, SignatureKey: ca, CertType: ssh.UserCert}
}

func TestRevokeAPI(t *testing.T) {
	e, _ := startSigner(t, "", nil)

	// The KRL exists before anything is revoked.
	resp, body := e.get(t, api.PathKRL, "", "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.HeaderKRLGeneration) != "0" {
		t.Fatalf("empty KRL: status %d generation %q", resp.StatusCode, resp.Header.Get(api.HeaderKRLGeneration))
	}
	if k, err := krl.Parse(body); err != nil || !k.Empty() {
		t.Fatalf("empty KRL: %v", err)
	}

	for name, tc := range map[string]struct {
		token  string
		req    api.RevokeRequest
		status int
	}{
		"no token":        {"", api.RevokeRequest{KeyID: "alice@example.com", Reason: "r"}, http.StatusUnauthorized},
		"join token":      {"join-token-1", api.RevokeRequest{KeyID: "alice@example.com", Reason: "r"}, http.StatusUnauthorized},
		"comment line":    {"# admins", api.RevokeRequest{KeyID: "alice@example.com", Reason: "r"}, http.StatusUnauthorized},
		"no reason":       {"admin-token-1", api.RevokeRequest{KeyID: "alice@example.com"}, http.StatusBadRequest},
		"two targets":     {"admin-token-1", api.RevokeRequest{KeyID: "alice@example.com", Serial: 4, Reason: "r"}, http.StatusBadRequest},
		"no target":       {"admin-token-1", api.RevokeRequest{Reason: "r"}, http.StatusBadRequest},
		"key id newline":  {"admin-token-1", api.RevokeRequest{KeyID: "alice\n", Reason: "r"}, http.StatusBadRequest},
		"certificate key": {"admin-token-1", api.RevokeRequest{PublicKey: pubLine(fakeSigned(t)), Reason: "r"}, http.StatusBadRequest},
		"own user CA":     {"admin-token-1", api.RevokeRequest{PublicKey: pubLine(e.userCA), Reason: "r"}, http.StatusBadRequest},
		"undo unknown":    {"admin-token-1", api.RevokeRequest{KeyID: "nobody@example.com", Reason: "r", Undo: true}, http.StatusNotFound},
	} {
		if status, _ := e.revoke(t, tc.token, tc.req); status != tc.status {
			t.Errorf("%s: status %d, want %d", name, status, tc.status)
		}
	}
	if n := len(e.audit.named(audit.AccessDenied)); n != 3 {
		t.Errorf("access.denied events = %d, want 3", n)
	}

	status, out := e.revoke(t, "admin-token-2", api.RevokeRequest{KeyID: "alice@example.com", Reason: "left the company"})
	if status != http.StatusOK || !out.Changed || out.Generation != 1 || out.Revocation.Kind != api.RevokeKeyID {
		t.Fatalf("revoke: %d %+v", status, out)
	}
	if !strings.HasPrefix(out.Revocation.By, "api token 2 from 127.0.0.1") {
		t.Errorf("by = %q", out.Revocation.By)
	}
	if status, out := e.revoke(t, "admin-token-1", api.RevokeRequest{KeyID: "alice@example.com", Reason: "again"}); status != http.StatusOK || out.Changed || out.Generation != 1 {
		t.Fatalf("repeat revoke: %d %+v", status, out)
	}
	bobKey := newKey(t)
	e.revoke(t, "admin-token-1", api.RevokeRequest{Serial: 4242, Reason: "laptop stolen"})
	if _, out := e.revoke(t, "admin-token-1", api.RevokeRequest{PublicKey: pubLine(bobKey), Reason: "key leaked"}); out.Generation != 3 {
		t.Fatalf("generation %d, want 3", out.Generation)
	}
	revoked := e.audit.named(audit.CertRevoked)
	if len(revoked) != 3 || revoked[0].Person != "alice@example.com" || revoked[0].Reason != "left the company" ||
		revoked[1].Serial != 4242 || revoked[2].KeyFP != ssh.FingerprintSHA256(bobKey) {
		t.Fatalf("cert.revoked events: %+v", revoked)
	}

	// The KRL revokes exactly that.
	resp, body = e.get(t, api.PathKRL, "", "")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.HeaderKRLGeneration) != "3" || etag == "" ||
		resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("KRL: status %d headers %v", resp.StatusCode, resp.Header)
	}
	k, err := krl.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != 3 {
		t.Errorf("KRL version %d", k.Version)
	}
	for _, tc := range []struct {
		key  ssh.PublicKey
		want bool
	}{
		{fakeCert(e.userCA, newKey(t), "alice@example.com", 1), true},
		{fakeCert(e.userCA, newKey(t), "carol@example.com", 4242), true},
		{fakeCert(e.userCA, newKey(t), "carol@example.com", 4243), false},
		{fakeCert(e.userCA, bobKey, "bob@example.com", 9), true},
		{fakeCert(newKey(t), newKey(t), "alice@example.com", 1), false},
	} {
		if got := k.Revoked(tc.key); got != tc.want {
			t.Errorf("KRL revoked(%s) = %v, want %v", tc.key.(*ssh.Certificate).KeyId, got, tc.want)
		}
	}
	if resp, body := e.get(t, api.PathKRL, "", etag); resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match: status %d, %d bytes", resp.StatusCode, len(body))
	}

	// The JSON list: public without reasons, admins with.
	resp, body = e.get(t, api.PathRevocations, "", "")
	var pub api.RevocationList
	if err := json.Unmarshal(body, &pub); err != nil || resp.StatusCode != http.StatusOK || pub.Generation != 3 || len(pub.Revocations) != 3 {
		t.Fatalf("public list: %d %v %+v", resp.StatusCode, err, pub)
	}
	if strings.Contains(string(body), "left the company") || pub.Revocations[0].By != "" {
		t.Error("public list shows reasons or authors")
	}
	if r2, _ := e.get(t, api.PathRevocations, "", resp.Header.Get("ETag")); r2.StatusCode != http.StatusNotModified {
		t.Errorf("list If-None-Match: status %d", r2.StatusCode)
	}
	resp, body = e.get(t, api.PathRevocations, "admin-token-1", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "left the company") {
		t.Errorf("admin list: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.get(t, api.PathRevocations, "wrong", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("list with a wrong token: status %d", resp.StatusCode)
	}

	// Undo.
	status, out = e.revoke(t, "admin-token-1", api.RevokeRequest{KeyID: "alice@example.com", Reason: "rehired", Undo: true})
	if status != http.StatusOK || !out.Changed || out.Generation != 4 {
		t.Fatalf("undo: %d %+v", status, out)
	}
	if ev := e.audit.named(audit.CertUnrevoked); len(ev) != 1 || ev[0].Person != "alice@example.com" || ev[0].Reason != "rehired" {
		t.Fatalf("cert.unrevoked: %+v", ev)
	}
	resp, body = e.get(t, api.PathKRL, "", etag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.HeaderKRLGeneration) != "4" {
		t.Fatalf("KRL after undo: %d gen %s", resp.StatusCode, resp.Header.Get(api.HeaderKRLGeneration))
	}
	if k, _ := krl.Parse(body); k == nil || k.Revoked(fakeCert(e.userCA, newKey(t), "alice@example.com", 1)) {
		t.Error("alice still revoked after undo")
	}
	assertNoAdminTokens(t, e)
}

func fakeSigned(t *testing.T) *ssh.Certificate {
	return fakeCert(newKey(t), newKey(t), "x", 1)
}

func assertNoAdminTokens(t *testing.T, e *env) {
	t.Helper()
	e.audit.mu.Lock()
	b, _ := json.Marshal(e.audit.events)
	e.audit.mu.Unlock()
	if strings.Contains(string(b), "admin-token") {
		t.Fatal("an admin token reached the audit log")
	}
}

// A revoked person gets no new certificate; after undo they do.
func TestRevokedPersonIsRefused(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	if status, _ := e.revoke(t, "admin-token-1", api.RevokeRequest{KeyID: "alice@example.com", Reason: "offboarded"}); status != http.StatusOK {
		t.Fatalf("revoke: %d", status)
	}
	r, cb := e.startBrowser(t, newKey(t), 0, "alice", "pw-alice")
	e.callback(t, cb)
	res := e.poll(t, r)
	if res.Status != api.StatusFailed || res.Certificate != "" || !strings.Contains(res.Error, "revoked") || res.Hint == "" {
		t.Fatalf("poll = %+v", res)
	}
	ev := e.audit.named(audit.CertRefused)
	if len(ev) != 1 || ev[0].Person != "alice@example.com" || !strings.Contains(ev[0].Reason, "revoked") {
		t.Fatalf("cert.refused: %+v", ev)
	}
	if len(e.audit.named(audit.CertIssued)) != 0 {
		t.Fatal("a certificate was issued to a revoked person")
	}

	// A revoked key is refused too, for anyone.
	e.revoke(t, "admin-token-1", api.RevokeRequest{KeyID: "alice@example.com", Reason: "back", Undo: true})
	key := newKey(t)
	e.revoke(t, "admin-token-1", api.RevokeRequest{PublicKey: pubLine(key), Reason: "leaked"})
	r, cb = e.startBrowser(t, key, 0, "alice", "pw-alice")
	e.callback(t, cb)
	if res := e.poll(t, r); res.Status != api.StatusFailed {
		t.Fatalf("revoked key got a certificate: %+v", res)
	}

	r, cb = e.startBrowser(t, newKey(t), 0, "alice", "pw-alice")
	e.callback(t, cb)
	if res := e.poll(t, r); res.Status != api.StatusDone {
		t.Fatalf("after undo: %+v", res)
	}
}
