package climsg

import (
	"bytes"
	"errors"
	"fmt"
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
