package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/bastionauth"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/signer/ca"
)

// The delegated certificate a recording bastion asks for on every
// recorded hop is the signer's hottest path (issue 7: >= 5,000/s over
// HTTPS on 2 cores). These benchmarks isolate the handler (no TLS) and the
// whole round trip over HTTPS on loopback; run with -cpuprofile for
// pprof. The audit log is a real file with the default settings (signed
// checkpoint and fsync every 1,000 events).

type benchSigner struct {
	srv     *Server
	dir     string
	bastion bastionID
	person  string
	key     string
}

func newBenchSigner(b testing.TB) *benchSigner {
	return newDirectSigner(b, time.Now)
}

// newDirectSigner is a signer (no listener, no IdP) on clock now, with a
// bastion identity and a person's certificate valid for an hour.
func newDirectSigner(b testing.TB, now func() time.Time) *benchSigner {
	b.Helper()
	dir := b.TempDir()
	for _, k := range []string{"user_ca", "host_ca"} {
		if err := ca.Generate(filepath.Join(dir, k), "", ""); err != nil {
			b.Fatal(err)
		}
	}
	cfg, err := config.Parse("bench.toml", []byte(`
[signer]
listen = "127.0.0.1:0"
data_dir = "`+dir+`"
host_patterns = ["*.internal"]
bastions = ["postern-bastion"]
`))
	if err != nil {
		b.Fatal(err)
	}
	aw, err := audit.OpenFile(filepath.Join(dir, "audit.log"), audit.Options{Writer: "signer", WriterID: "bench", KeyFile: filepath.Join(dir, "audit_key")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { aw.Close() })
	srv, err := New(cfg, Options{Audit: aw, Now: now})
	if err != nil {
		b.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	bk, _ := ssh.NewSignerFromKey(priv)
	bcert, err := srv.hostCA.SignHost(bk.PublicKey(), []string{"postern-bastion"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	pk, _, _ := ed25519.GenerateKey(rand.Reader)
	ppub, _ := ssh.NewPublicKey(pk)
	person, err := srv.userCA.SignUser(ca.UserCert{Key: ppub, KeyID: "alice@example.com", Principals: []string{"ubuntu"}, TTL: time.Hour,
		Extensions: map[string]string{"permit-pty": "", "roles@postern": "infra"}})
	if err != nil {
		b.Fatal(err)
	}
	ck, _, _ := ed25519.GenerateKey(rand.Reader)
	cpub, _ := ssh.NewPublicKey(ck)
	return &benchSigner{srv: srv, dir: dir, bastion: bastionID{key: bk, cert: bcert}, person: pubLine(person), key: pubLine(cpub)}
}

type signedReq struct {
	body []byte
	sig  string
}

// requests signs n distinct delegate requests (fresh nonces), outside the
// timed part.
func (s *benchSigner) requests(b testing.TB, n int) []signedReq {
	b.Helper()
	out := make([]signedReq, n)
	for i := range out {
		env := bastionauth.NewEnvelope(s.bastion.cert, s.srv.now())
		body, _ := json.Marshal(api.DelegateRequest{BastionCert: env.BastionCert, Timestamp: env.Timestamp, Nonce: env.Nonce,
			PersonCert: s.person, Login: "ubuntu", Node: "node1", PublicKey: s.key, SessionID: fmt.Sprintf("s-%08d", i)})
		sig, err := bastionauth.Sign(s.bastion.key, body)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = signedReq{body, sig}
	}
	return out
}

// BenchmarkDelegateHandler is the handler alone: one request per op, on
// as many goroutines as GOMAXPROCS.
func BenchmarkDelegateHandler(b *testing.B) {
	s := newBenchSigner(b)
	h := s.srv.Handler()
	reqs := s.requests(b, b.N) // a fresh nonce each
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := reqs[next.Add(1)-1]
			r := httptest.NewRequest(http.MethodPost, api.PathDelegate, bytes.NewReader(p.body))
			r.Header.Set(bastionauth.Header, p.sig)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Errorf("delegate: %d %s", w.Code, w.Body.String())
				return
			}
		}
	})
}

// BenchmarkDelegateHTTPS is the whole round trip over TLS 1.3 on
// loopback with keep-alive, 16 clients (the load generator runs in the
// same process and on the same cores).
func BenchmarkDelegateHTTPS(b *testing.B) {
	s := newBenchSigner(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := LoadTLS(s.srv.cfg.Signer)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(ctx, ln, cert) }()
	b.Cleanup(func() { cancel(); <-done })
	pem, err := os.ReadFile(filepath.Join(s.dir, DevTLSCert))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	const clients = 16
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "https://" + ln.Addr().String() + api.PathDelegate
	reqs := s.requests(b, b.N)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism((clients + 1) / 2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := reqs[next.Add(1)-1]
			r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(p.body))
			r.Header.Set(bastionauth.Header, p.sig)
			resp, err := hc.Do(r)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("delegate: %s", resp.Status)
				return
			}
		}
	})
}
