package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/metrics"
)

// Reasons a connection is refused before SSH starts, the values of
// postern_bastion_connections_refused_total's reason label.
const (
	refusedProxySource = "proxy_untrusted_source"
	refusedProxyHeader = "proxy_bad_header"
	refusedShutdown    = "shutting_down"
)

// bastionMetrics are the bastion's Prometheus metrics. Sessions and bytes
// are counted from the audit events the bastion writes (metrics.CountingEmitter),
// so that every kind of session is counted alike.
type bastionMetrics struct {
	reg       *metrics.Registry
	refused   metrics.CounterVec
	active    metrics.GaugeVec
	relayed   metrics.CounterVec
	events    metrics.CounterVec
	auditErrs metrics.Counter

	mu   sync.Mutex
	open map[string]string // session id -> mode label of open sessions
}

func newBastionMetrics() *bastionMetrics {
	r := metrics.New("bastion")
	modes := [][]string{{"relay"}, {"recorded"}, {"kube"}}
	return &bastionMetrics{
		reg: r,
		refused: r.CounterVec("connections_refused_total", "Connections refused before SSH: PROXY protocol source or header, shutdown.",
			[]string{"reason"}, []string{refusedProxySource}, []string{refusedProxyHeader}, []string{refusedShutdown}),
		active: r.GaugeVec("sessions_active", "Sessions open now, by mode (relay: ssh -J hop, recorded: recording mode, kube).",
			[]string{"mode"}, modes...),
		relayed: r.CounterVec("relayed_bytes_total", "Bytes relayed by ended sessions (in: client to target, out: target to client).",
			[]string{"direction"}, []string{"in"}, []string{"out"}),
		events: r.CounterVec("audit_events_total", "Audit events written, by event name.", []string{"event"},
			[]string{audit.SessionStart}, []string{audit.SessionEnd}, []string{audit.AccessDenied}, []string{audit.AuthFailed}),
		auditErrs: r.Counter("audit_errors_total", "Audit events that could not be written."),
		open:      map[string]string{},
	}
}

// sessionMode maps an event's method to the mode label (a fixed set).
func sessionMode(method string) string {
	switch method {
	case "direct-tcpip":
		return "relay"
	case "record":
		return "recorded"
	case "kube":
		return "kube"
	}
	return "other"
}

// observe counts a written event.
func (m *bastionMetrics) observe(e audit.Event) {
	m.events.Inc(e.Event)
	if e.SessionID == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e.Event {
	case audit.SessionStart:
		if _, dup := m.open[e.SessionID]; dup {
			return
		}
		mode := sessionMode(e.Method)
		m.open[e.SessionID] = mode
		m.active.Add(1, mode)
	case audit.SessionEnd:
		mode, ok := m.open[e.SessionID]
		if !ok {
			return
		}
		delete(m.open, e.SessionID)
		m.active.Add(-1, mode)
		m.relayed.Add(float64(e.BytesIn), "in")
		m.relayed.Add(float64(e.BytesOut), "out")
	}
}

// registerRecordingMetrics exports the spool uploader's counters.
func (s *Server) registerRecordingMetrics() {
	r := s.metrics.reg
	stats := func() (pending, errs float64) {
		if s.rec == nil || s.rec.uploader == nil {
			return 0, 0
		}
		st := s.rec.uploader.Stats()
		return float64(st.PendingFiles), float64(st.UploadErrors)
	}
	r.GaugeFunc("recordings_pending", "Recordings sealed in the spool, waiting for upload (as of the last scan).",
		func() float64 { p, _ := stats(); return p })
	r.CounterFunc("recording_upload_errors_total", "Failed recording upload attempts.",
		func() float64 { _, e := stats(); return e })
}

// serving is set once the SSH listener accepts, for /readyz.
type readiness struct{ serving atomic.Bool }

// ready is /readyz: serving and not shutting down.
func (s *Server) ready() error {
	switch {
	case s.closing.Load():
		return errors.New("shutting down")
	case !s.readiness.serving.Load():
		return errors.New("not serving yet")
	}
	return nil
}

// startMetrics serves /metrics, /healthz and /readyz on metrics_listen
// until ctx is done. Off when metrics_listen is empty.
func (s *Server) startMetrics(ctx context.Context) error {
	if s.cfg.MetricsListen == "" {
		return nil
	}
	ln, err := metrics.Listen(s.cfg.MetricsListen)
	if err != nil {
		return err
	}
	go s.metrics.reg.Serve(ctx, ln, s.ready, s.log)
	return nil
}
