package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		pos   []string
		speed float64
	}{
		{"id first", []string{"abc", "--speed", "2"}, []string{"abc"}, 2},
		{"flags first", []string{"--speed=3", "abc"}, []string{"abc"}, 3},
		{"none", nil, nil, 1},
		{"double dash", []string{"--", "--speed"}, []string{"--speed"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			speed := fs.Float64("speed", 1, "")
			pos, err := parseInterspersed(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.pos, pos); diff != "" || *speed != tt.speed {
				t.Errorf("pos (-want +got):\n%s speed %v", diff, *speed)
			}
		})
	}
}

func TestHostsMatch(t *testing.T) {
	tests := []struct {
		patterns []string
		addr     string
		want     bool
	}{
		{[]string{"*"}, "127.0.0.1:2222", true},
		{[]string{"*"}, "bastion.example.com:22", true},
		{[]string{"*.example.com"}, "bastion.example.com:22", true},
		{[]string{"*.example.com"}, "bastion.example.com:2222", false},
		{[]string{"[*.example.com]:2222"}, "bastion.example.com:2222", true},
		{[]string{"*", "!evil.example.com"}, "evil.example.com:22", false},
		{[]string{"other.example.com"}, "bastion.example.com:22", false},
	}
	for _, tt := range tests {
		if got := hostsMatch(tt.patterns, tt.addr); got != tt.want {
			t.Errorf("hostsMatch(%q, %s) = %v, want %v", tt.patterns, tt.addr, got, tt.want)
		}
	}
}

// TestHostCAChecker: only a host certificate from the known_hosts CA that
// names the host dialled is accepted.
func TestHostCAChecker(t *testing.T) {
	newSigner := func() ssh.Signer {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, _ := ssh.NewSignerFromKey(priv)
		return s
	}
	hostCA, otherCA, host := newSigner(), newSigner(), newSigner()
	now := time.Now()
	cert := func(ca ssh.Signer, principals ...string) *ssh.Certificate {
		c := &ssh.Certificate{Key: host.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: principals,
			ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix())}
		if err := c.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		return c
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := "# postern host CA\n@cert-authority * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostCA.PublicKey()))) + "\n"
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	check, err := hostCAChecker(kh, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	tests := []struct {
		name string
		key  ssh.PublicKey
		ok   bool
	}{
		{"certificate from the CA", cert(hostCA, "127.0.0.1", "postern-bastion"), true},
		{"another CA", cert(otherCA, "127.0.0.1"), false},
		{"another host's certificate", cert(hostCA, "node1"), false},
		{"plain key", host.PublicKey(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check("127.0.0.1:2222", remote, tt.key)
			if (err == nil) != tt.ok {
				t.Errorf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}

	if _, err := hostCAChecker(filepath.Join(t.TempDir(), "none"), time.Now); err == nil || !strings.Contains(err.(*Error).Hint, "postern config") {
		t.Errorf("missing known_hosts: %v", err)
	}
}
