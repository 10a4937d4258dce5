package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestHandler(t *testing.T) {
	r := New("test")
	c := r.CounterVec("things_total", "Things.", []string{"result"}, []string{"ok"}, []string{"refused"})
	c.Inc("ok")
	c.Add(2, "ok")
	g := r.GaugeVec("open", "Open things.", []string{"mode"})
	g.Add(1, "relay")
	g.Set(5, "kube")
	hv := r.HistogramVec("wait_seconds", "Waits.", []float64{0.1, 1}, []string{"verb"}, []string{"get"})
	hv.Observe(0.5, "get")
	r.GaugeFunc("pending", "Pending.", func() float64 { return 7 })
	r.CounterFunc("errors_total", "Errors.", func() float64 { return 3 })
	var notReady error = errors.New("starting")
	h := r.Handler(func() error { return notReady })

	code, body := get(t, h, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`postern_test_things_total{result="ok"} 3`,
		`postern_test_things_total{result="refused"} 0`,
		`postern_test_open{mode="relay"} 1`,
		`postern_test_open{mode="kube"} 5`,
		`postern_test_wait_seconds_bucket{verb="get",le="0.1"} 0`,
		`postern_test_wait_seconds_bucket{verb="get",le="1"} 1`,
		`postern_test_wait_seconds_count{verb="get"} 1`,
		`postern_test_pending 7`,
		`postern_test_errors_total 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Errorf("/readyz before ready: %d %q", code, body)
	}
	notReady = nil
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("/readyz when ready: %d", code)
	}
}
