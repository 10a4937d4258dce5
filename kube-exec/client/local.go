package client

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"
)

// NewToken returns a random bearer token.
func NewToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// Local is the loopback endpoint kubectl talks to.
type Local struct {
	// Token is the bearer token requests must carry.
	Token string
	// Dial opens a stream to the API server (Bastion.Dial).
	Dial   func(ctx context.Context) (net.Conn, error)
	Logger *slog.Logger

	rp     *httputil.ReverseProxy
	active atomic.Int64 // requests in progress (a watch counts while it runs)
	last   atomic.Int64 // when the last request ended (or the handler was made), unix nanoseconds
}

// Idle returns how long no request has been in progress (0 while one is).
func (l *Local) Idle() time.Duration {
	if l.active.Load() > 0 {
		return 0
	}
	return time.Since(time.Unix(0, l.last.Load()))
}

// upstream names the far side in proxied requests; the forwarder replaces
// it with the API server's address.
var upstream = &url.URL{Scheme: "http", Host: "kube.postern.invalid"}

// Handler returns the endpoint's HTTP handler.
func (l *Local) Handler() http.Handler {
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
	l.last.Store(time.Now().UnixNano())
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return l.Dial(ctx) },
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	l.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.Header.Del("Authorization")
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			l.Logger.Warn("request to the cluster failed", "err", err)
			msg := "kube-exec: " + err.Error()
			if errors.Is(err, ErrExpired) || errors.Is(err, ErrNotLoggedIn) {
				msg += " (run postern login)"
			}
			writeStatus(w, http.StatusBadGateway, "ServiceUnavailable", msg)
		},
		ErrorLog: slog.NewLogLogger(l.Logger.Handler(), slog.LevelDebug),
	}
	return http.HandlerFunc(l.serve)
}

func (l *Local) serve(w http.ResponseWriter, r *http.Request) {
	l.active.Add(1)
	defer func() {
		l.last.Store(time.Now().UnixNano())
		l.active.Add(-1)
	}()
	want := "Bearer " + l.Token
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "kube-exec: this endpoint needs its bearer token (use the kubeconfig kube-exec wrote)")
		return
	}
	l.rp.ServeHTTP(w, r)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
}
