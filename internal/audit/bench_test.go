package audit

import (
	"context"
	"io"
	"path/filepath"
	"testing"
)

// BenchmarkEmit measures one event: to a file with the defaults (fsync at
// checkpoints, every 1000 events), to a file with an fsync per event, and
// to memory (chaining and encoding only).
func BenchmarkEmit(b *testing.B) {
	ev := Event{Event: SessionStart, Person: "alice@example.com", Roles: []string{"ops"}, Login: "ubuntu",
		Serial: 1234567, ClientAddr: "192.0.2.10:51234", SessionID: "s-0123456789abcdef", Target: "node1.prod.internal:22", Node: "node1"}
	for _, bc := range []struct {
		name string
		opt  Options
		file bool
	}{
		{"file", Options{}, true},
		{"file-sync-every", Options{SyncEvery: true}, true},
		{"memory", Options{}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opt := bc.opt
			opt.Writer, opt.WriterID, opt.Key, opt.CheckpointInterval = "bastion", "b1", testKey(1), -1
			var w *Writer
			if bc.file {
				var err error
				if w, err = OpenFile(filepath.Join(b.TempDir(), "audit.log"), opt); err != nil {
					b.Fatal(err)
				}
			} else {
				w = NewWriterOptions(io.Discard, opt)
			}
			defer w.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := w.Emit(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify measures verification per event.
func BenchmarkVerify(b *testing.B) {
	log := makeLog(b, 5000)
	keys := keySet(testKey(1))
	b.SetBytes(int64(len(log)))
	for b.Loop() {
		if r := VerifyBytes(log, VerifyOptions{Keys: keys}); !r.OK(true) {
			b.Fatal(findings(r))
		}
	}
}
