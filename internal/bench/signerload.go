package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/bastionauth"
)

// SignerResult is certificates issued over HTTPS by many parallel clients.
type SignerResult struct {
	Endpoint string // api.PathDelegate or api.PathHostCert
	Clients  int
	Issued   int
	Errors   int
	First    string `json:",omitempty"`
	Secs     float64
	PerSec   float64
	Ms       Sample
	// CPU seconds per 1,000 certificates: the signer's, and the load
	// generator's (this process), which shares the same cores.
	SignerCPUPerK, ClientCPUPerK float64
	// Profile is perf's flat profile of the signer, when taken.
	Profile string `json:",omitempty"`
}

// runSigner measures the two issuance paths that need no login: the
// delegated certificate a recording bastion asks for on every recorded
// hop (bastion-signed request, person's certificate checked against CA and
// KRL, certificate signed, audit event written), and a host certificate
// for a join token.
func (s *Stack) runSigner(ctx context.Context, cfg Config) ([]SignerResult, error) {
	pem, err := os.ReadFile(filepath.Join(s.Dir, "signer", "tls.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	var out []SignerResult
	profile := ""
	if cfg.Phases["perf"] && len(cfg.SignerConc) > 0 {
		profile = s.profileSigner(ctx, cfg, pool)
	}
	for _, ep := range []string{api.PathDelegate, api.PathHostCert} {
		for i, c := range cfg.SignerConc {
			r, err := s.signerLoad(ctx, pool, ep, c, cfg.SignerTotal)
			if i == 0 && ep == api.PathDelegate {
				r.Profile = profile
			}
			if err != nil {
				return out, err
			}
			cfg.Logf("signer %-22s clients %-3d %7.0f certs/s  p50 %.1f ms p99 %.1f ms  errors %d  signer CPU %.2fs/1k, client CPU %.2fs/1k",
				ep, c, r.PerSec, r.Ms.Median, r.Ms.P99, r.Errors, r.SignerCPUPerK, r.ClientCPUPerK)
			out = append(out, r)
		}
	}
	return out, nil
}

// profileSigner runs perf on the signer during an extra delegated run
// (the first client count, half the requests) whose figures are not
// reported: perf's sampling and unwinding take CPU from the same 2 cores.
func (s *Stack) profileSigner(ctx context.Context, cfg Config, pool *x509.CertPool) string {
	stop := startPerf(filepath.Join(s.Dir, "perf-signer-delegate.data"), s.Signer.Pid())
	r, err := s.signerLoad(ctx, pool, api.PathDelegate, cfg.SignerConc[0], max(1, cfg.SignerTotal/2))
	prof := stop()
	if err != nil {
		cfg.Logf("signer profile run: %v", err)
	} else {
		cfg.Logf("signer profile run (perf attached, not reported): %.0f certs/s", r.PerSec)
	}
	return prof
}

type preparedReq struct {
	body []byte
	sig  string
}

// prepare builds n requests ahead of the timed run, so the load generator
// spends its share of the CPU on HTTPS, not on signing request bodies.
func (s *Stack) prepare(ep string, n int) ([]preparedReq, error) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(priv.Public())
	keyLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	person := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.UserCert)))
	out := make([]preparedReq, n)
	for i := range out {
		if ep == api.PathHostCert {
			b, _ := json.Marshal(api.HostCertRequest{PublicKey: keyLine, Hosts: []string{fmt.Sprintf("n%d.bench", i%100)}})
			out[i] = preparedReq{body: b}
			continue
		}
		env := bastionauth.NewEnvelope(s.BastionCert, time.Now())
		b, _ := json.Marshal(api.DelegateRequest{
			BastionCert: env.BastionCert, Timestamp: env.Timestamp, Nonce: env.Nonce,
			PersonCert: person, Login: LoginUser, Node: NodeRec, PublicKey: keyLine, SessionID: fmt.Sprintf("bench%08d", i),
		})
		sig, err := bastionauth.Sign(s.BastionKey, b)
		if err != nil {
			return nil, err
		}
		out[i] = preparedReq{body: b, sig: sig}
	}
	return out, nil
}

func (s *Stack) signerLoad(ctx context.Context, pool *x509.CertPool, ep string, clients, total int) (SignerResult, error) {
	r := SignerResult{Endpoint: ep, Clients: clients}
	reqs, err := s.prepare(ep, total+clients)
	if err != nil {
		return r, err
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	send := func(p preparedReq) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.SignerURL+ep, bytes.NewReader(p.body))
		req.Header.Set("Content-Type", "application/json")
		if p.sig != "" {
			req.Header.Set(bastionauth.Header, p.sig)
		} else {
			req.Header.Set("Authorization", "Bearer "+s.JoinToken)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		var cr api.CertResponse
		if err := json.Unmarshal(b, &cr); err != nil || !strings.Contains(cr.Certificate, "-cert-v01@openssh.com") {
			return fmt.Errorf("no certificate in the answer: %.200s", b)
		}
		return nil
	}
	// Warm-up: one request per client opens its TLS connection.
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); _ = send(reqs[total+i]) }()
	}
	wg.Wait()

	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  []float64
	)
	deadline := time.Now().Add(60 * time.Second)
	sc0, _ := procCPU(s.Signer.Pid(), false)
	cc0 := selfCPU()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(total) || time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				t := time.Now()
				err := send(reqs[i])
				d := time.Since(t)
				mu.Lock()
				if err != nil {
					r.Errors++
					if r.First == "" {
						r.First = err.Error()
					}
				} else {
					r.Issued++
					lat = append(lat, float64(d.Microseconds())/1000)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.Secs = time.Since(start).Seconds()
	sc1, _ := procCPU(s.Signer.Pid(), false)
	cc1 := selfCPU()
	r.PerSec = float64(r.Issued) / r.Secs
	r.Ms = Summarise(lat)
	if r.Issued > 0 {
		r.SignerCPUPerK = (sc1 - sc0) / float64(r.Issued) * 1000
		r.ClientCPUPerK = (cc1 - cc0) / float64(r.Issued) * 1000
	}
	return r, nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// GoBench is the output of go test -bench for the signing and
// verification ceilings.
type GoBench struct {
	Command string
	Lines   []string
	Error   string `json:",omitempty"`
}

func runGoBench(ctx context.Context, cfg Config) GoBench {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", cfg.GoBenchTime}, cfg.GoBenchPkgs...)
	g := GoBench{Command: "go " + strings.Join(args, " ")}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.Root
	b, err := cmd.CombinedOutput()
	if err != nil {
		g.Error = err.Error()
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") || strings.HasPrefix(l, "cpu:") || strings.HasPrefix(l, "FAIL") || strings.HasPrefix(l, "---") {
			g.Lines = append(g.Lines, l)
		}
	}
	return g
}
