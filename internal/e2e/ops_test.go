package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/testenv"
)

// freePort returns a loopback TCP port free at the time of the call.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startHAProxy runs Debian's haproxy in TCP mode on 127.0.0.1:port in
// front of the backends (round robin), adding a PROXY header with option
// (send-proxy or send-proxy-v2).
func startHAProxy(t *testing.T, port int, option string, backends ...string) {
	t.Helper()
	bin := testenv.RequireBinary(t, "haproxy")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "  server b%d %s %s\n", i+1, b, option)
	}
	bstWrite(t, cfg, []byte(fmt.Sprintf(`global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend ssh
  bind 127.0.0.1:%d
  default_backend bastions
backend bastions
  balance roundrobin
%s`, port, servers.String())), 0o644)
	logs := testenv.NewLogs(t, "haproxy "+option)
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not listen on %d:\n%s", port, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOpsProxyProtocol puts a real HAProxy in front of the real bastion
// (send-proxy-v2, then send-proxy): the client binds 127.0.0.5, HAProxy
// reaches the bastion from 127.0.0.1, and the audit events carry
// 127.0.0.5. Connections that skip the balancer are refused, and
// /metrics, /healthz and /readyz answer on metrics_listen.
func TestOpsProxyProtocol(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	e := startBastionEnv(t)
	e.stop(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ops := fmt.Sprintf("shutdown_grace = \"3s\"\nproxy_protocol = true\nproxy_from = [\"127.0.0.1/32\"]\nmetrics_listen = %q\n", metricsAddr)
	bstWrite(t, e.cfgPath, []byte(strings.Replace(string(cfg), "shutdown_grace = \"3s\"\n", ops, 1)), 0o600)
	e.start(t)
	bastionAddr := e.addr

	alice := e.user(t, "alice@example.com", bstCertOpts{roles: "ops"})
	seen := map[string]bool{}
	for _, option := range []string{"send-proxy-v2", "send-proxy"} {
		t.Run(option, func(t *testing.T) {
			lbPort := freePort(t)
			startHAProxy(t, lbPort, option, bastionAddr)
			node1 := testenv.HostBlock{Pattern: e.node1.Name, User: e.node1.Login, ProxyJump: "bastion"}
			if e.node1.Netns == nil {
				node1.Port = e.node1.Port
			}
			sshCfg := testenv.ClientConfig(t, e.knownHosts, alice.agent.Socket,
				testenv.HostBlock{Pattern: "bastion", HostName: "127.0.0.1", Port: lbPort, User: "e2e",
					Extra: []string{"BindAddress 127.0.0.5", "LogLevel INFO"}},
				node1)
			marker := "hello-" + option
			out, stderr, code := bstRun(t, "ssh", sshCfg, "", "node1", "echo "+marker)
			if code != 0 || !strings.Contains(out, marker) {
				t.Fatalf("ssh through haproxy %s = %q, exit %d; stderr: %s\nbastion:\n%s", option, out, code, stderr, e.logs)
			}
			start := e.waitEvent(t, audit.SessionStart, func(ev audit.Event) bool {
				return strings.HasPrefix(ev.ClientAddr, "127.0.0.5:") && !seen[ev.SessionID]
			})
			seen[start.SessionID] = true
			end := e.waitEvent(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.SessionID == start.SessionID })
			if end.ClientAddr != start.ClientAddr {
				t.Errorf("session.end client_addr %q, session.start %q", end.ClientAddr, start.ClientAddr)
			}
			for _, ev := range e.events(t, audit.SessionStart) {
				if strings.HasPrefix(ev.ClientAddr, "127.0.0.1:") {
					t.Errorf("an event carries the load balancer's address: %+v", ev)
				}
			}
		})
	}

	t.Run("a listed source without a header is refused", func(t *testing.T) {
		_, stderr, code := bstRun(t, "ssh", alice.cfg, "", "-o", "ConnectTimeout=5", "bastion", "true")
		if code == 0 {
			t.Fatalf("ssh straight to the bastion succeeded; stderr: %s", stderr)
		}
		waitLog(t, e, "reason=proxy_bad_header")
	})

	t.Run("an unlisted source is refused even with a header", func(t *testing.T) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", bastionAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PROXY TCP4 192.0.2.9 127.0.0.1 1234 22\r\nSSH-2.0-OpenSSH_9.9\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 64)); err == nil {
			t.Fatalf("the bastion answered an unlisted source (%d bytes)", n)
		}
		waitLog(t, e, "reason=proxy_untrusted_source")
		for _, ev := range e.events(t, audit.AuthFailed) {
			if strings.HasPrefix(ev.ClientAddr, "192.0.2.9") {
				t.Errorf("an untrusted header reached the audit log: %+v", ev)
			}
		}
	})

	t.Run("metrics, healthz and readyz", func(t *testing.T) {
		base := "http://" + metricsAddr
		if code, _ := httpGet(t, base+"/healthz"); code != 200 {
			t.Errorf("/healthz: %d", code)
		}
		if code, body := httpGet(t, base+"/readyz"); code != 200 {
			t.Errorf("/readyz: %d %s", code, body)
		}
		_, body := httpGet(t, base+"/metrics")
		for _, want := range []string{
			`postern_bastion_audit_events_total{event="session.start"} 2`,
			`postern_bastion_audit_events_total{event="session.end"} 2`,
			`postern_bastion_sessions_active{mode="relay"} 0`,
			`postern_bastion_connections_refused_total{reason="proxy_bad_header"}`,
			`postern_bastion_connections_refused_total{reason="proxy_untrusted_source"} 1`,
			`postern_bastion_relayed_bytes_total{direction="in"}`,
			`postern_bastion_recordings_pending 0`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		if strings.Contains(body, `postern_bastion_relayed_bytes_total{direction="out"} 0`) {
			t.Errorf("/metrics counts no relayed bytes:\n%s", body)
		}
	})
}

// waitLog waits for the bastion's log to contain s.
func waitLog(t *testing.T, e *bastionEnv, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the bastion's log lacks %q:\n%s", s, e.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpsReload: SIGHUP applies new roles and node rules to new hops
// without dropping open sessions; a bad configuration is refused and the
// one in force kept.
func TestOpsReload(t *testing.T) {
	e := startBastionEnv(t)
	alice := e.user(t, "alice@example.com", bstCertOpts{roles: "db"})
	if _, _, code := bstRun(t, "ssh", alice.cfg, "", "node1", "true"); code == 0 {
		t.Fatal("db reached node1 before the reload")
	}
	oldDB, newDB := `nodes = ["node2"]`, `nodes = ["node2", "node1"]`
	if !e.netns {
		oldDB = fmt.Sprintf(`nodes = ["127.0.0.1:%d"]`, e.node2.Port)
		newDB = fmt.Sprintf(`nodes = ["127.0.0.1:%d", "127.0.0.1:%d"]`, e.node2.Port, e.node1.Port)
	}
	orig, err := os.ReadFile(e.cfgPath)
	if err != nil || !strings.Contains(string(orig), oldDB) {
		t.Fatalf("config lacks %s (%v)", oldDB, err)
	}
	// A session open across both reloads.
	type result struct {
		out  string
		code int
	}
	long := make(chan result, 1)
	go func() {
		out, _, code := bstRun(t, "ssh", alice.cfg, "", "node2", "sleep 3; echo survived")
		long <- result{out, code}
	}()
	e.waitEvent(t, audit.SessionStart, func(ev audit.Event) bool { return ev.Node == "node2" })

	hup := func() { _ = e.cmd.Process.Signal(syscall.SIGHUP) }
	bstWrite(t, e.cfgPath, []byte(strings.Replace(string(orig), oldDB, newDB+"\nextensions = [\"permit-everything\"]", 1)), 0o600)
	hup()
	waitLog(t, e, "reload refused")
	if _, _, code := bstRun(t, "ssh", alice.cfg, "", "node1", "true"); code == 0 {
		t.Fatal("a refused reload was applied")
	}

	bstWrite(t, e.cfgPath, []byte(strings.Replace(string(orig), oldDB, newDB, 1)), 0o600)
	hup()
	waitLog(t, e, "reloaded roles, node rules, kube access and recording settings")
	if out, stderr, code := bstRun(t, "ssh", alice.cfg, "", "node1", "echo reloaded"); code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("db after the reload: %q, exit %d: %s", out, code, stderr)
	}
	select {
	case r := <-long:
		if r.code != 0 || !strings.Contains(r.out, "survived") {
			t.Errorf("the open session was dropped: %q, exit %d", r.out, r.code)
		}
	case <-time.After(30 * time.Second):
		t.Error("the open session did not finish")
	}
}

// metricValue returns the value of one series (name{labels} as
// Prometheus prints it) in a /metrics body.
func metricValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// waitMetric waits until the series at base/metrics satisfies ok.
func waitMetric(t *testing.T, base, series string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := httpGet(t, base+"/metrics")
		v, found := metricValue(body, series)
		if found && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v (found %v) never satisfied the test; /metrics:\n%s", series, v, found, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStatus waits until GET base+path answers code.
func waitStatus(t *testing.T, base, path string, code int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, body := httpGet(t, base+path)
		if got == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q, want %d", path, got, body, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func is(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }

// TestOpsSignerMetrics: a real login through the test IdP and a refused
// one (carol is in no role's group) move the signer's login and
// certificate counters, and a host certificate asked for without a join
// token counts as refused.
func TestOpsSignerMetrics(t *testing.T) {
	metricsAddr := freeAddr(t)
	s := startStackSigner(t, fmt.Sprintf("metrics_listen = %q", metricsAddr), "")
	base := "http://" + metricsAddr
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	waitStatus(t, base, "/readyz", 200)
	for _, series := range []string{
		`postern_signer_logins_total{result="started"}`,
		`postern_signer_certificates_total{kind="user",result="issued"}`,
		`postern_signer_certificates_total{kind="user",result="refused"}`,
		`postern_signer_certificates_total{kind="host",result="refused"}`,
	} {
		waitMetric(t, base, series, is(0))
	}

	if p, code := s.browserLogin(t, "alice", "alice-pw", "--signer", s.signerURL, "--signer-ca", s.tlsCA); code != 0 {
		t.Fatalf("alice's login: exit %d\n%s", code, p.stderr)
	}
	if _, code := s.browserLogin(t, "carol", "carol-pw", "--signer", s.signerURL, "--signer-ca", s.tlsCA); code == 0 {
		t.Fatal("carol, in no role's group, got a certificate")
	}
	resp, err := s.https.Post(s.signerURL+api.PathHostCert, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("host-cert without a join token: %d", resp.StatusCode)
	}

	waitMetric(t, base, `postern_signer_logins_total{result="started"}`, is(2))
	waitMetric(t, base, `postern_signer_logins_total{result="failed"}`, is(1))
	waitMetric(t, base, `postern_signer_certificates_total{kind="user",result="issued"}`, is(1))
	waitMetric(t, base, `postern_signer_certificates_total{kind="user",result="refused"}`, is(1))
	waitMetric(t, base, `postern_signer_certificates_total{kind="host",result="refused"}`, is(1))
	waitMetric(t, base, `postern_signer_audit_events_total{event="cert.issued"}`, is(1))
	waitMetric(t, base, `postern_signer_audit_errors_total`, is(0))
	// The counters agree with the audit log.
	if n := len(s.events(t, audit.CertIssued)); n != 1 {
		t.Errorf("%d cert.issued events", n)
	}
	if n := len(s.events(t, audit.CertRefused)); n != 1 {
		t.Errorf("%d cert.refused events", n)
	}
}
