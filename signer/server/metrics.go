package server

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/metrics"
)

// signerMetrics are the signer's Prometheus metrics, counted from the
// audit events it writes (metrics.CountingEmitter), so that a certificate is
// counted exactly when its event is on record.
type signerMetrics struct {
	reg       *metrics.Registry
	logins    metrics.CounterVec
	certs     metrics.CounterVec
	events    metrics.CounterVec
	auditErrs metrics.Counter
	serving   atomic.Bool
	stopping  atomic.Bool
}

func newSignerMetrics() *signerMetrics {
	r := metrics.New("signer")
	return &signerMetrics{
		reg: r,
		logins: r.CounterVec("logins_total", "Logins started and failed (a successful login issues a user certificate).",
			[]string{"result"}, []string{"started"}, []string{"failed"}),
		certs: r.CounterVec("certificates_total", "Certificates issued and refused, by kind (user, host, delegated).",
			[]string{"kind", "result"},
			[]string{"user", "issued"}, []string{"user", "refused"}, []string{"host", "issued"}, []string{"host", "refused"},
			[]string{"delegated", "issued"}),
		events:    r.CounterVec("audit_events_total", "Audit events written, by event name.", []string{"event"}),
		auditErrs: r.Counter("audit_errors_total", "Audit events that could not be written."),
	}
}

func (m *signerMetrics) observe(e audit.Event) {
	m.events.Inc(e.Event)
	switch e.Event {
	case audit.LoginStarted:
		m.logins.Inc("started")
	case audit.LoginFailed:
		m.logins.Inc("failed")
	case audit.CertIssued:
		m.certs.Inc("user", "issued")
	case audit.CertRefused:
		m.certs.Inc("user", "refused")
	case audit.HostCertIssued:
		m.certs.Inc("host", "issued")
	case audit.HostCertRefused:
		m.certs.Inc("host", "refused")
	case audit.CertDelegated:
		m.certs.Inc("delegated", "issued")
	}
}

// ready is /readyz: serving and not shutting down.
func (s *Server) ready() error {
	switch {
	case s.metrics.stopping.Load():
		return errors.New("shutting down")
	case !s.metrics.serving.Load():
		return errors.New("not serving yet")
	}
	return nil
}

// startMetrics serves /metrics, /healthz and /readyz on metrics_listen
// until ctx is done. Off when metrics_listen is empty.
func (s *Server) startMetrics(ctx context.Context) error {
	if s.cfg.Signer.MetricsListen == "" {
		return nil
	}
	ln, err := metrics.Listen(s.cfg.Signer.MetricsListen)
	if err != nil {
		return err
	}
	go s.metrics.reg.Serve(ctx, ln, s.ready, s.log)
	return nil
}
