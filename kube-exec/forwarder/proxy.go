package forwarder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/kube-exec/kubepath"
)

// Proxy serves API requests for the identity carried in each request's
// context (see [WithIdentity]).
type Proxy struct {
	// Cluster is the cluster's name, for audit events.
	Cluster string
	// Target is the API server's base URL.
	Target *url.URL
	// Transport carries the forwarder's own credential.
	Transport http.RoundTripper
	// UpgradeTransport carries upgrade requests (exec, attach,
	// port-forward over SPDY or WebSocket); it must speak HTTP/1.1.
	// Default Transport.
	UpgradeTransport http.RoundTripper
	Audit            audit.Emitter
	Logger           *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time

	rp *httputil.ReverseProxy
}

type identityKey struct{}

// WithIdentity returns ctx carrying the identity requests on it act for.
func WithIdentity(ctx context.Context, id kubeproto.Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func identityFrom(ctx context.Context) (kubeproto.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(kubeproto.Identity)
	return id, ok
}

// reqState is one request's audit record, shared by the hooks.
type reqState struct {
	user   string
	groups []string
	status int
	errMsg string
}

type stateKey struct{}

// Init builds the reverse proxy; call it once before serving.
func (p *Proxy) Init() {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	up := p.UpgradeTransport
	if up == nil {
		up = p.Transport
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     splitTransport{normal: p.Transport, upgrade: up},
		FlushInterval: -1,
		ModifyResponse: func(res *http.Response) error {
			if st, ok := res.Request.Context().Value(stateKey{}).(*reqState); ok {
				st.status = res.StatusCode
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if st, ok := r.Context().Value(stateKey{}).(*reqState); ok {
				st.errMsg = err.Error()
			}
			if errors.Is(err, context.Canceled) {
				w.WriteHeader(499) // the client went away; nobody reads this
				return
			}
			p.Logger.Warn("proxy to the API server failed", "err", err)
			WriteStatus(w, http.StatusBadGateway, "ServiceUnavailable", "postern: the forwarder cannot reach the API server of cluster "+p.Cluster)
		},
		ErrorLog: slog.NewLogLogger(p.Logger.Handler(), slog.LevelDebug),
	}
}

// strippedPrefixes are request headers that could carry an identity: all
// are removed before the forwarder sets its own.
var strippedPrefixes = []string{"Impersonate-", "X-Remote-"}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st, _ := pr.In.Context().Value(stateKey{}).(*reqState)
	pr.SetURL(p.Target)
	h := pr.Out.Header
	h.Del("Authorization")
	h.Del("Proxy-Authorization")
	for k := range h {
		for _, pre := range strippedPrefixes {
			if strings.HasPrefix(http.CanonicalHeaderKey(k), pre) {
				delete(h, k)
			}
		}
	}
	h.Set("Impersonate-User", st.user)
	for _, g := range st.groups {
		h.Add("Impersonate-Group", g)
	}
}

// ServeHTTP proxies one request as the identity in its context and writes
// its audit event when it ends.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.Now()
	id, ok := identityFrom(r.Context())
	if !ok {
		WriteStatus(w, http.StatusInternalServerError, "InternalError", "postern: request without an identity")
		return
	}
	st := &reqState{user: id.Users[0], groups: id.Groups}
	// kubectl --as: one of the users the roles allow, nothing else.
	if asked := r.Header.Get("Impersonate-User"); asked != "" && asked != st.user {
		if !slices.Contains(id.Users, asked) {
			st.status = http.StatusForbidden
			st.errMsg = "impersonation of " + asked + " refused"
			WriteStatus(w, http.StatusForbidden, "Forbidden", fmt.Sprintf("postern: you may not act as %q through postern; your roles allow: %s", asked, strings.Join(id.Users, ", ")))
			p.emit(r, id, st, start)
			return
		}
		st.user = asked
	}
	sw := &statusWriter{ResponseWriter: w}
	// Deferred: ReverseProxy ends a stream the client left (a watch) by
	// panicking with http.ErrAbortHandler.
	defer func() {
		if st.status == 0 {
			st.status = sw.status
		}
		p.emit(r, id, st, start)
	}()
	ctx := context.WithValue(r.Context(), stateKey{}, st)
	p.rp.ServeHTTP(sw, r.WithContext(ctx))
}

func (p *Proxy) emit(r *http.Request, id kubeproto.Identity, st *reqState, start time.Time) {
	info := kubepath.Parse(r.Method, r.URL.Path, r.URL.RawQuery)
	e := audit.Event{
		Event:         audit.KubeRequest,
		Person:        id.Person,
		Roles:         id.Roles,
		Cluster:       p.Cluster,
		KubeUser:      st.user,
		Groups:        st.groups,
		Verb:          info.Verb,
		APIGroup:      info.APIGroup,
		Resource:      info.Resource,
		Subresource:   info.Subresource,
		KubeNamespace: info.Namespace,
		KubeName:      info.Name,
		Status:        st.status,
		DurationMS:    p.Now().Sub(start).Milliseconds(),
		SessionID:     id.SessionID,
		ConnID:        id.ConnID,
		ClientAddr:    id.ClientAddr,
		Error:         st.errMsg,
	}
	if !info.IsResource {
		e.Target = sanitizePath(info.Path)
	}
	if err := p.Audit.Emit(context.WithoutCancel(r.Context()), e); err != nil {
		p.Logger.Error("write audit event", "event", e.Event, "err", err)
	}
	p.Logger.Debug("kube request", "person", id.Person, "verb", e.Verb, "resource", e.Resource, "namespace", e.KubeNamespace,
		"name", e.KubeName, "status", e.Status, "duration_ms", e.DurationMS)
}

func sanitizePath(p string) string {
	if len(p) > 200 {
		p = p[:200] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, p)
}

// splitTransport sends upgrade requests over an HTTP/1.1 transport.
type splitTransport struct{ normal, upgrade http.RoundTripper }

func (t splitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Upgrade") != "" {
		return t.upgrade.RoundTrip(r)
	}
	return t.normal.RoundTrip(r)
}

// statusWriter records the status written; Unwrap keeps Flush and Hijack
// reachable through http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// WriteStatus writes a Kubernetes Status object, which kubectl shows as
// "Error from server (Reason): message".
func WriteStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
}
