package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "postern"

// Registry holds one process's metrics. A zero Registry is not usable;
// call New.
type Registry struct {
	reg *prometheus.Registry
	sub string
}

// New returns a registry whose metrics are named postern_SUBSYSTEM_*,
// with the Go runtime and process collectors.
func New(subsystem string) *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{reg: reg, sub: subsystem}
}

// Counter only goes up.
type Counter struct{ c prometheus.Counter }

// Inc adds one.
func (c Counter) Inc() { c.c.Inc() }

// Add adds n (n >= 0).
func (c Counter) Add(n float64) { c.c.Add(n) }

// CounterVec is counters by label values.
type CounterVec struct{ v *prometheus.CounterVec }

// Inc adds one to the counter of these label values.
func (c CounterVec) Inc(values ...string) { c.v.WithLabelValues(values...).Inc() }

// Add adds n to the counter of these label values.
func (c CounterVec) Add(n float64, values ...string) { c.v.WithLabelValues(values...).Add(n) }

// GaugeVec is gauges by label values.
type GaugeVec struct{ v *prometheus.GaugeVec }

// Add adds n (possibly negative) to the gauge of these label values.
func (g GaugeVec) Add(n float64, values ...string) { g.v.WithLabelValues(values...).Add(n) }

// Set sets the gauge of these label values to n.
func (g GaugeVec) Set(n float64, values ...string) { g.v.WithLabelValues(values...).Set(n) }

// HistogramVec is histograms by label values.
type HistogramVec struct{ v *prometheus.HistogramVec }

// Observe adds one observation of v (in the metric's unit, e.g. seconds)
// to the histogram of these label values.
func (h HistogramVec) Observe(v float64, values ...string) { h.v.WithLabelValues(values...).Observe(v) }

// Counter registers a counter postern_SUB_NAME.
func (r *Registry) Counter(name, help string) Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: r.sub, Name: name, Help: help})
	r.reg.MustRegister(c)
	return Counter{c}
}

// CounterVec registers counters postern_SUB_NAME with these labels;
// initial lists label values to export as 0 from the start (one slice of
// values per series).
func (r *Registry) CounterVec(name, help string, labels []string, initial ...[]string) CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: r.sub, Name: name, Help: help}, labels)
	r.reg.MustRegister(v)
	for _, vals := range initial {
		v.WithLabelValues(vals...)
	}
	return CounterVec{v}
}

// GaugeVec registers gauges postern_SUB_NAME with these labels.
func (r *Registry) GaugeVec(name, help string, labels []string, initial ...[]string) GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: r.sub, Name: name, Help: help}, labels)
	r.reg.MustRegister(v)
	for _, vals := range initial {
		v.WithLabelValues(vals...)
	}
	return GaugeVec{v}
}

// HistogramVec registers histograms postern_SUB_NAME with these bucket
// upper bounds and labels; initial as for CounterVec.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels []string, initial ...[]string) HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: r.sub, Name: name, Help: help, Buckets: buckets}, labels)
	r.reg.MustRegister(v)
	for _, vals := range initial {
		v.WithLabelValues(vals...)
	}
	return HistogramVec{v}
}

// GaugeFunc registers a gauge read from f at each scrape.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: r.sub, Name: name, Help: help}, f))
}

// CounterFunc registers a counter read from f at each scrape (for
// counters another package keeps).
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	r.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Subsystem: r.sub, Name: name, Help: help}, f))
}

// Handler serves /metrics, /healthz (200 while the process runs) and
// /readyz (200 when ready returns nil, else 503 with the reason).
func (r *Registry) Handler(ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Listen opens the operations listener on addr, so that a busy port is
// reported before the service starts.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics: %w", err)
	}
	return ln, nil
}

// Serve serves r.Handler(ready) on ln until ctx is done.
func (r *Registry) Serve(ctx context.Context, ln net.Listener, ready func() error, log *slog.Logger) {
	hs := &http.Server{Handler: r.Handler(ready), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server", "err", err)
	}
}
