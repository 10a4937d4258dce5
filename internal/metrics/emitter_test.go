package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/audit"
)

type failingEmitter struct{ fail bool }

func (f failingEmitter) Emit(context.Context, audit.Event) error {
	if f.fail {
		return errors.New("disk full")
	}
	return nil
}

// TestCountingEmitter: a written event is observed; one the log refused is
// counted as an error and not observed (metrics never count what the audit
// log does not hold).
func TestCountingEmitter(t *testing.T) {
	r := New("test")
	errs := r.Counter("audit_errors_total", "audit events that could not be written")
	var seen []string
	ok := CountingEmitter{Inner: failingEmitter{}, Errors: errs, Observe: func(e audit.Event) { seen = append(seen, e.Event) }}
	bad := ok
	bad.Inner = failingEmitter{fail: true}
	if err := ok.Emit(context.Background(), audit.Event{Event: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := bad.Emit(context.Background(), audit.Event{Event: "b"}); err == nil {
		t.Fatal("the inner error was swallowed")
	}
	if strings.Join(seen, ",") != "a" {
		t.Errorf("observed %v, want [a]", seen)
	}
	rec := httptest.NewRecorder()
	r.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "postern_test_audit_errors_total 1") {
		t.Errorf("audit errors not counted:\n%s", body)
	}
}
