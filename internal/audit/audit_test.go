package audit

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWriterConcurrentLines(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, "signer", "s1")
	w.Now = func() time.Time { return time.Unix(1700000000, 0) }
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Emit(context.Background(), Event{Event: CertIssued, Person: "alice", Serial: uint64(i + 1)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	evs, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 50 {
		t.Fatalf("got %d events, want 50", len(evs))
	}
	seen := map[uint64]bool{}
	for _, e := range evs {
		if e.Writer != "signer" || e.WriterID != "s1" || !e.Time.Equal(time.Unix(1700000000, 0)) {
			t.Fatalf("bad stamp: %+v", e)
		}
		seen[e.Serial] = true
	}
	if len(seen) != 50 {
		t.Fatalf("lost events: %d distinct", len(seen))
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	_, err := Read(strings.NewReader("{\"event\":\"x\"}\nnot json\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v", err)
	}
}
