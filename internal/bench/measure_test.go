package bench

import (
	"errors"
	"testing"
)

// failures counts per cell and keeps each cell's first error; a cell
// without errors leaves its Sample alone.
func TestFailures(t *testing.T) {
	f := failures[string]{}
	f.add("a", errors.New("first"))
	f.add("a", errors.New("second"))
	f.add("b", errors.New("only"))
	var a, b, c Sample
	f.into("a", &a)
	f.into("b", &b)
	f.into("c", &c)
	if a.Errors != 2 || a.FirstError != "first" || b.Errors != 1 || b.FirstError != "only" || c.Errors != 0 || c.FirstError != "" {
		t.Errorf("a %d %q, b %d %q, c %d %q", a.Errors, a.FirstError, b.Errors, b.FirstError, c.Errors, c.FirstError)
	}
}

// Summarise uses nearest-rank percentiles and the middle of an even count.
func TestSummarise(t *testing.T) {
	s := Summarise([]float64{4, 1, 3, 2})
	if s.N != 4 || s.Min != 1 || s.Max != 4 || s.Median != 2.5 || s.P10 != 1 || s.P90 != 4 {
		t.Errorf("%+v", s)
	}
	if e := Summarise(nil); e.N != 0 || e.Median != 0 {
		t.Errorf("empty: %+v", e)
	}
}
