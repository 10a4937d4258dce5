package climsg

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	Print(&b, "postern-x", fmt.Errorf("load config: %w", WithHint(errors.New("no such file"), "run init first")))
	if got, want := b.String(), "postern-x: error: load config: no such file\npostern-x: hint: run init first\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	b.Reset()
	Print(&b, "p", errors.New("plain"))
	if b.String() != "p: error: plain\n" {
		t.Fatalf("got %q", b.String())
	}
}

func TestNewLogger(t *testing.T) {
	var b strings.Builder
	l, err := NewLogger(&b, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), `"msg":"shown","k":"v"`) {
		t.Errorf("json logger at warn wrote %q", b.String())
	}
	for _, bad := range [][2]string{{"loud", "text"}, {"info", "xml"}} {
		_, err := NewLogger(&b, bad[0], bad[1])
		var h Hinted
		if !errors.As(err, &h) || h.Hint == "" {
			t.Errorf("NewLogger(%q, %q) = %v, want an error with a hint", bad[0], bad[1], err)
		}
	}
}
