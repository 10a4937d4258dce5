package login

import (
	"errors"
	"net"
	"net/url"
	"testing"
)

func TestCheckRedirect(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"http://127.0.0.1:8080/callback", true},
		{"http://[::1]:8080/cb", true},
		{"http://localhost:1/x?y=z", true},
		{"http://127.9.9.9:80/", true},
		{"https://127.0.0.1:8080/callback", false},
		{"http://127.0.0.1/callback", false},
		{"http://evil.example.com:80/", false},
		{"http://10.0.0.1:80/", false},
		{"http://user:pw@127.0.0.1:80/", false},
		{"http://127.0.0.1.evil.example:80/", false},
		{"javascript:alert(1)", false},
		{"//127.0.0.1:80/", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := CheckRedirect(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckRedirect(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadRedirect) {
				t.Fatalf("error %v is not ErrBadRedirect", err)
			}
		})
	}
}

// FuzzCheckRedirect: whatever is accepted must be an http URL to a
// loopback host with a port, so the signer can never redirect a browser
// elsewhere.
func FuzzCheckRedirect(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:1/", "http://[::1]:2/x", "http://localhost:3", "http://a@127.0.0.1:1/", "http://127.0.0.1:1@evil:2/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := CheckRedirect(s)
		if err != nil {
			return
		}
		again, perr := url.Parse(u.String())
		if perr != nil || again.Scheme != "http" || again.Port() == "" || again.User != nil {
			t.Fatalf("accepted %q -> %q", s, u)
		}
		if h := again.Hostname(); h != "localhost" {
			ip := net.ParseIP(h)
			if ip == nil || !ip.IsLoopback() {
				t.Fatalf("accepted non-loopback host %q from %q", h, s)
			}
		}
	})
}
