package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Idle is 0 while a request is in progress (a long watch keeps a proxy
// with --idle-exit alive) and counts from the end of the last one.
func TestLocalIdle(t *testing.T) {
	inDial := make(chan struct{})
	release := make(chan struct{})
	l := &Local{Token: "tok", Dial: func(ctx context.Context) (net.Conn, error) {
		close(inDial)
		<-release
		return nil, errors.New("no cluster here")
	}}
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	if l.Idle() < 0 || l.Idle() > time.Minute {
		t.Fatalf("fresh handler idle for %s", l.Idle())
	}
	done := make(chan int)
	go func() {
		req, _ := http.NewRequest("GET", srv.URL+"/api", nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-inDial
	if d := l.Idle(); d != 0 {
		t.Errorf("idle for %s while a request is in progress", d)
	}
	close(release)
	if code := <-done; code != http.StatusBadGateway {
		t.Errorf("status %d, want 502", code)
	}
	before := l.Idle()
	time.Sleep(20 * time.Millisecond)
	if after := l.Idle(); after <= before || after == 0 {
		t.Errorf("idle %s then %s after the request ended", before, after)
	}
}
