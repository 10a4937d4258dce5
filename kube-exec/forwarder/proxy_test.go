package forwarder

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/kubeproto"
)

type memAudit struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (m *memAudit) Emit(_ context.Context, e audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evs = append(m.evs, e)
	return nil
}

// The API server sees the forwarder's identity choice only: no client
// Authorization, Impersonate-* or X-Remote-* header gets through.
func TestProxyHeaders(t *testing.T) {
	var got http.Header
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		io.WriteString(w, `{"kind":"PodList"}`)
	}))
	defer api.Close()
	target, _ := url.Parse(api.URL)
	aud := &memAudit{}
	p := &Proxy{Cluster: "prod", Target: target, Transport: http.DefaultTransport, Audit: aud}
	p.Init()
	id := kubeproto.Identity{Person: "alice@example.com", Cluster: "prod", Users: []string{"alice@example.com", "oncall"}, Groups: []string{"dev"}, SessionID: "s1"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	}))
	defer srv.Close()

	tests := []struct {
		name       string
		hdr        map[string]string
		wantStatus int
		wantUser   string
	}{
		{name: "plain", wantStatus: 200, wantUser: "alice@example.com"},
		{name: "header tricks", hdr: map[string]string{
			"Authorization": "Bearer admin", "Impersonate-Group": "system:masters",
			"Impersonate-Extra-Scopes": "x", "Impersonate-Uid": "0", "X-Remote-User": "admin", "X-Remote-Group": "system:masters",
		}, wantStatus: 200, wantUser: "alice@example.com"},
		{name: "as another allowed user", hdr: map[string]string{"Impersonate-User": "oncall"}, wantStatus: 200, wantUser: "oncall"},
		{name: "as admin", hdr: map[string]string{"Impersonate-User": "system:admin"}, wantStatus: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			req, _ := http.NewRequest("GET", srv.URL+"/api/v1/namespaces/team-a/pods?watch=false", nil)
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				if got != nil {
					t.Errorf("refused request reached the API server: %v", got)
				}
				return
			}
			if u := got.Values("Impersonate-User"); !slices.Equal(u, []string{tt.wantUser}) {
				t.Errorf("Impersonate-User %v, want %s", u, tt.wantUser)
			}
			if g := got.Values("Impersonate-Group"); !slices.Equal(g, []string{"dev"}) {
				t.Errorf("Impersonate-Group %v", g)
			}
			for k := range got {
				if k == "Authorization" || strings.HasPrefix(k, "X-Remote-") || strings.HasPrefix(k, "Impersonate-") && k != "Impersonate-User" && k != "Impersonate-Group" {
					t.Errorf("header %s reached the API server", k)
				}
			}
		})
	}
	// The handler writes its event after the response reached the client:
	// give the last one a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		aud.mu.Lock()
		n := len(aud.evs)
		aud.mu.Unlock()
		if n >= len(tests) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	aud.mu.Lock()
	defer aud.mu.Unlock()
	if len(aud.evs) != len(tests) {
		t.Fatalf("%d audit events, want %d", len(aud.evs), len(tests))
	}
	// Events are written as each request ends, not necessarily in order.
	var ok200, refused int
	for _, e := range aud.evs {
		if e.Event != audit.KubeRequest || e.Person != "alice@example.com" || e.Verb != "list" || e.Resource != "pods" || e.KubeNamespace != "team-a" || e.SessionID != "s1" {
			t.Errorf("event %+v", e)
		}
		switch e.Status {
		case 200:
			ok200++
		case 403:
			refused++
		}
	}
	if ok200 != 3 || refused != 1 {
		t.Errorf("%d allowed and %d refused events, want 3 and 1", ok200, refused)
	}
}
