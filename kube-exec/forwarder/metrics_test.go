package forwarder

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/metrics"
)

func scrape(t *testing.T, m *fwdMetrics, ready func() error, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.reg.Handler(ready).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// Requests are counted by code and a bounded verb when their audit event
// is written; a method no Kubernetes client uses is "other".
func TestRequestMetrics(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "BREW" {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		io.WriteString(w, `{"kind":"PodList"}`)
	}))
	defer api.Close()
	target, _ := url.Parse(api.URL)
	m := newFwdMetrics([]string{"b1:2222", "b2:2222"})
	aud := &memAudit{}
	p := &Proxy{Cluster: "prod", Target: target, Transport: http.DefaultTransport, Audit: metrics.CountingEmitter{Inner: aud, Errors: m.auditErrs, Observe: m.observe}}
	p.Init()
	id := kubeproto.Identity{Person: "alice@example.com", Cluster: "prod", Users: []string{"alice@example.com"}, SessionID: "s1"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	}))
	defer srv.Close()

	for _, rq := range []struct{ method, path, as string }{
		{"GET", "/api/v1/namespaces/team-a/pods", ""},
		{"GET", "/api/v1/namespaces/team-a/pods", ""},
		{"GET", "/api/v1/namespaces/team-a/pods/p1", ""},
		{"GET", "/api/v1/namespaces/team-a/pods", "system:admin"},
		{"BREW", "/api/v1/namespaces/team-a/pods", ""},
	} {
		req, _ := http.NewRequest(rq.method, srv.URL+rq.path, nil)
		if rq.as != "" {
			req.Header.Set("Impersonate-User", rq.as)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []string{
		`postern_kube_forwarder_requests_total{code="200",verb="list"} 2`,
		`postern_kube_forwarder_requests_total{code="200",verb="get"} 1`,
		`postern_kube_forwarder_requests_total{code="403",verb="list"} 1`,
		`postern_kube_forwarder_requests_total{code="405",verb="other"} 1`,
		`postern_kube_forwarder_request_duration_seconds_count{verb="list"} 3`,
		`postern_kube_forwarder_tunnel_up{bastion="b1:2222"} 0`,
		`postern_kube_forwarder_tunnel_connect_errors_total{bastion="b2:2222"} 0`,
		`postern_kube_forwarder_tunnels_up 0`,
		`postern_kube_forwarder_audit_errors_total 0`,
	}
	// Events are written after the response reached the client.
	deadline := time.Now().Add(5 * time.Second)
	var body string
	for {
		_, body = scrape(t, m, nil, "/metrics")
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q:\n%s", missing, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Tunnels up and down move the gauges; a second registration is a
// reconnect.
func TestTunnelMetrics(t *testing.T) {
	m := newFwdMetrics([]string{"b1:2222", "b2:2222"})
	t1 := &Tunnel{Addr: "b1:2222", metrics: m}
	t2 := &Tunnel{Addr: "b2:2222", metrics: m}
	t1.setConnected(true)
	t2.setConnected(true)
	t1.setConnected(false)
	t1.setConnected(true)
	t2.setConnected(false)
	m.connectFailed("b2:2222")
	_, body := scrape(t, m, nil, "/metrics")
	for _, w := range []string{
		`postern_kube_forwarder_tunnels_up 1`,
		`postern_kube_forwarder_tunnel_up{bastion="b1:2222"} 1`,
		`postern_kube_forwarder_tunnel_up{bastion="b2:2222"} 0`,
		`postern_kube_forwarder_tunnel_reconnects_total{bastion="b1:2222"} 1`,
		`postern_kube_forwarder_tunnel_reconnects_total{bastion="b2:2222"} 0`,
		`postern_kube_forwarder_tunnel_connect_errors_total{bastion="b2:2222"} 1`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
}

// /readyz needs a tunnel up and an API server that accepts the
// forwarder's credential.
func TestReadiness(t *testing.T) {
	status := http.StatusOK
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			t.Errorf("probe asked %s", r.URL.Path)
		}
		w.WriteHeader(status)
	}))
	defer api.Close()
	target, _ := url.Parse(api.URL)
	m := newFwdMetrics([]string{"b1:2222"})
	tun := &Tunnel{Addr: "b1:2222", metrics: m}

	tests := []struct {
		name   string
		up     bool
		status int
		want   int
		reason string
	}{
		{"no tunnel", false, 200, 503, "no tunnel to a bastion is up"},
		{"tunnel and API server", true, 200, 200, ""},
		{"RBAC hides /readyz", true, 403, 200, ""},
		{"credential refused", true, 401, 503, "refuses the forwarder's credential"},
		{"API server not ready", true, 500, 503, "answered /readyz with 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tun.Connected() != tt.up {
				tun.setConnected(tt.up)
			}
			status = tt.status
			probe := newAPIProbe(target, http.DefaultTransport) // a fresh one: no cached answer
			code, body := scrape(t, m, func() error { return ready(m, probe) }, "/readyz")
			if code != tt.want || !strings.Contains(body, tt.reason) {
				t.Errorf("/readyz = %d %q, want %d %q", code, body, tt.want, tt.reason)
			}
		})
	}
	t.Run("API server gone", func(t *testing.T) {
		api.Close()
		probe := newAPIProbe(target, http.DefaultTransport)
		code, body := scrape(t, m, func() error { return ready(m, probe) }, "/readyz")
		if code != 503 || !strings.Contains(body, "API server unreachable") {
			t.Errorf("/readyz = %d %q", code, body)
		}
	})
	if code, _ := scrape(t, m, nil, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
}
