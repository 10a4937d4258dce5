package audit

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzVerify: the reader and the verifier take any bytes without panicking,
// with findings bounded, and a log that verifies cleanly also reads.
func FuzzVerify(f *testing.F) {
	clean := makeLog(f, 6)
	f.Add(clean)
	ls := lines(clean)
	f.Add(join(append(append([]string{}, ls[:3]...), ls[4:]...)))
	f.Add(join(append([]string{ls[1]}, ls...)))
	f.Add([]byte(strings.Join(ls, "")[:len(clean)-7]))
	f.Add([]byte("{}\n\n{\"seq\":18446744073709551615,\"writer\":\"x\"}\nnot json\n"))
	f.Add([]byte(`{"event":"audit.recovered","writer":"a","seq":1,"torn":{"sha256":"x"}}` + "\n"))
	keys := keySet(testKey(1))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := VerifyBytes(b, VerifyOptions{Keys: keys, MaxFindings: 50})
		if len(r.Findings) > 50 {
			t.Fatalf("%d findings", len(r.Findings))
		}
		for _, f := range r.Findings {
			_ = f.String()
		}
		evs, err := Read(bytes.NewReader(b))
		if r.OK(true) && err != nil {
			t.Fatalf("verified but does not read: %v", err)
		}
		_ = evs
	})
}
