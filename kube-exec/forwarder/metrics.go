package forwarder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/metrics"
)

// requestVerbs are the values of the verb label: the Kubernetes verbs
// kubepath reports for resource requests and the lower-cased methods of
// non-resource ones. Anything else is counted as "other", so that a client
// choosing odd methods cannot add series.
var requestVerbs = map[string]bool{
	"get": true, "list": true, "watch": true, "create": true, "update": true, "patch": true,
	"delete": true, "deletecollection": true, "proxy": true,
	"post": true, "put": true, "head": true, "options": true,
}

// durationBuckets reach past the usual request into watches and exec
// streams, which last minutes.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800}

// fwdMetrics are the forwarder's Prometheus metrics. Requests are counted
// from the kube.request audit events the forwarder writes
// (metrics.CountingEmitter), as the bastion and the signer count from theirs;
// tunnels from the tunnels' state; bytes on the bastions' channels.
type fwdMetrics struct {
	reg         *metrics.Registry
	tunnelUp    metrics.GaugeVec
	reconnects  metrics.CounterVec
	connectErrs metrics.CounterVec
	requests    metrics.CounterVec
	duration    metrics.HistogramVec
	relayed     metrics.CounterVec
	auditErrs   metrics.Counter
	up          atomic.Int64 // tunnels up now
	channels    atomic.Int64 // channels open now
}

// newFwdMetrics registers the metrics; bastions (from the configuration,
// so a fixed set) label the per-tunnel series, exported as 0 from the
// start.
func newFwdMetrics(bastions []string) *fwdMetrics {
	r := metrics.New("kube_forwarder")
	per := make([][]string, len(bastions))
	for i, b := range bastions {
		per[i] = []string{b}
	}
	m := &fwdMetrics{
		reg: r,
		tunnelUp: r.GaugeVec("tunnel_up", "1 while the tunnel to this bastion (as configured in kube.forwarder.bastions) is up and registered, else 0.",
			[]string{"bastion"}, per...),
		reconnects: r.CounterVec("tunnel_reconnects_total", "Tunnels registered again after having been up before (a lost tunnel that came back).",
			[]string{"bastion"}, per...),
		connectErrs: r.CounterVec("tunnel_connect_errors_total", "Attempts to connect to a bastion that failed before the tunnel was registered (dial, SSH handshake, registration).",
			[]string{"bastion"}, per...),
		requests: r.CounterVec("requests_total", "Kubernetes API requests served, by HTTP status code and verb, counted when each ends.",
			[]string{"code", "verb"}),
		duration: r.HistogramVec("request_duration_seconds", "Time from a request's arrival to its end (a watch or exec stream at its end), by verb.",
			durationBuckets, []string{"verb"}),
		relayed: r.CounterVec("relayed_bytes_total", "Bytes carried on the bastions' channels, HTTP included (in: from the client through the bastion, out: back to it).",
			[]string{"direction"}, []string{"in"}, []string{"out"}),
		auditErrs: r.Counter("audit_errors_total", "Audit events that could not be written."),
	}
	r.GaugeFunc("tunnels_up", "Tunnels to bastions up and registered now.", func() float64 { return float64(m.up.Load()) })
	r.GaugeFunc("channels_open", "Channels the bastions opened for clients that are open now (one per client connection).",
		func() float64 { return float64(m.channels.Load()) })
	return m
}

// codeLabel bounds the code label to the three-digit HTTP codes.
func codeLabel(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status)
}

func verbLabel(verb string) string {
	if requestVerbs[verb] {
		return verb
	}
	return "other"
}

// tunnel records a tunnel to bastion going up or down. Methods of a nil
// *fwdMetrics do nothing, for a Tunnel run on its own.
func (m *fwdMetrics) tunnel(bastion string, up bool) {
	if m == nil {
		return
	}
	if up {
		m.up.Add(1)
		m.tunnelUp.Set(1, bastion)
	} else {
		m.up.Add(-1)
		m.tunnelUp.Set(0, bastion)
	}
}

func (m *fwdMetrics) reconnected(bastion string) {
	if m != nil {
		m.reconnects.Inc(bastion)
	}
}

func (m *fwdMetrics) connectFailed(bastion string) {
	if m != nil {
		m.connectErrs.Inc(bastion)
	}
}

// observe counts a written audit event.
func (m *fwdMetrics) observe(e audit.Event) {
	if e.Event != audit.KubeRequest {
		return
	}
	verb := verbLabel(e.Verb)
	m.requests.Inc(codeLabel(e.Status), verb)
	m.duration.Observe(float64(e.DurationMS)/1000, verb)
}

// countedChannel counts a channel's bytes and keeps channels_open.
type countedChannel struct {
	*channelConn
	m    *fwdMetrics
	once sync.Once
}

func (m *fwdMetrics) count(c *channelConn) *countedChannel {
	m.channels.Add(1)
	return &countedChannel{channelConn: c, m: m}
}

func (c *countedChannel) Read(p []byte) (int, error) {
	n, err := c.channelConn.Read(p)
	if n > 0 {
		c.m.relayed.Add(float64(n), "in")
	}
	return n, err
}

func (c *countedChannel) Write(p []byte) (int, error) {
	n, err := c.channelConn.Write(p)
	if n > 0 {
		c.m.relayed.Add(float64(n), "out")
	}
	return n, err
}

func (c *countedChannel) Close() error {
	c.once.Do(func() { c.m.channels.Add(-1) })
	return c.channelConn.Close()
}

// Readiness: /readyz answers 200 when at least one tunnel is up and the
// API server answers the forwarder. The API server is asked at most once
// per apiProbeCache, so that the unauthenticated endpoint cannot be used
// to load it.
const (
	apiProbeCache   = time.Second
	apiProbeTimeout = 3 * time.Second
)

// apiProbe asks the API server's /readyz with the forwarder's credential.
type apiProbe struct {
	url *url.URL
	rt  http.RoundTripper

	mu  sync.Mutex
	at  time.Time
	err error
}

func newAPIProbe(target *url.URL, rt http.RoundTripper) *apiProbe {
	return &apiProbe{url: target.JoinPath("/readyz"), rt: rt}
}

// check reports why the API server is not usable, or nil: it answered
// /readyz with 2xx, or with 403 (the forwarder's credential was accepted
// but RBAC does not show it /readyz). 401 means the credential is refused.
func (p *apiProbe) check() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < apiProbeCache {
		return p.err
	}
	p.err = p.ask()
	p.at = time.Now()
	return p.err
}

func (p *apiProbe) ask() error {
	ctx, cancel := context.WithTimeout(context.Background(), apiProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url.String(), nil)
	if err != nil {
		return err
	}
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("API server unreachable: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusForbidden:
		return nil
	case resp.StatusCode == http.StatusUnauthorized:
		return errors.New("the API server refuses the forwarder's credential (401)")
	default:
		return fmt.Errorf("the API server answered /readyz with %d", resp.StatusCode)
	}
}

// ready is /readyz.
func ready(m *fwdMetrics, api *apiProbe) error {
	if m.up.Load() == 0 {
		return errors.New("no tunnel to a bastion is up")
	}
	return api.check()
}
