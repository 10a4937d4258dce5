package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
[signer]
listen = "127.0.0.1:3080"
data_dir = "/tmp/p"

[signer.oidc]
issuer = "http://127.0.0.1:5556"
client_secret_file = "/tmp/p/secret"

[[role]]
name = "infra"
groups = ["infra"]
logins = ["ubuntu"]
nodes = ["*.prod.internal", "10.20.0.0/16:22-2222"]
max_ttl = "4h"

[[role]]
name = "dev"
groups = ["dev"]
logins = ["dev"]
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse("p.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Signer.URL, "https://127.0.0.1:3080"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if got, want := c.Signer.OIDC.RedirectURL, "https://127.0.0.1:3080/v1/login/callback"; got != want {
		t.Errorf("RedirectURL = %q, want %q", got, want)
	}
	if got, want := c.Signer.UserCAKey, "/tmp/p/user_ca"; got != want {
		t.Errorf("UserCAKey = %q, want %q", got, want)
	}
	if c.Roles[0].MaxTTL.Duration != 4*time.Hour || c.Roles[1].MaxTTL.Duration != DefaultMaxTTL {
		t.Errorf("max_ttl = %v, %v", c.Roles[0].MaxTTL, c.Roles[1].MaxTTL)
	}
	if got := c.Roles[1].Extensions; len(got) != 1 || got[0] != "permit-pty" {
		t.Errorf("default extensions = %v", got)
	}
	if !c.Signer.OIDC.DeviceFlowEnabled() {
		t.Error("device flow should default to on")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // every substring must appear
	}{
		{"unknown key", "[signer]\nlisten = \"127.0.0.1:1\"\nlistne = \"x\"\n", []string{"c.toml:3: signer.listne: unknown key"}},
		{"unknown key in role", "[[role]]\nname = \"a\"\ngroups = [\"g\"]\n\n[[role]]\nname = \"b\"\ngroups = [\"g\"]\nlogin = [\"x\"]\n", []string{"c.toml:8: role.login: unknown key"}},
		{"bad duration", "[[role]]\nname = \"a\"\ngroups = [\"g\"]\nmax_ttl = \"8 hours\"\n", []string{"c.toml:4", "max_ttl", "invalid duration"}},
		{"negative duration", "[signer]\nhost_cert_ttl = \"-1h\"\n", []string{"c.toml:2", "host_cert_ttl", "negative"}},
		{"syntax", "[signer\nlisten = 1\n", []string{"c.toml:2"}},
		{"wrong type", "[signer]\nlisten = 3080\n", []string{"c.toml:2", "signer.listen"}},
		{"many problems at once", "[signer]\nlisten = \"nope\"\n[signer.oidc]\nissuer = \"idp\"\n[[role]]\nname = \"a\"\ngroups = []\nextensions = [\"permit-everything\"]\nrecording = \"maybe\"\nnodes = [\"10.0.0.0/33\"]\n",
			[]string{"c.toml:2: signer.listen", "c.toml:4: signer.oidc.issuer", "client_secret_file: required", "c.toml:7: role[0].groups", "c.toml:8: role[0].extensions: unknown extension \"permit-everything\"", "c.toml:9: role[0].recording", "c.toml:10: role[0].nodes"}},
		{"duplicate role", "[[role]]\nname = \"a\"\ngroups = [\"g\"]\n[[role]]\nname = \"a\"\ngroups = [\"g\"]\n", []string{"c.toml:5: role[1].name: duplicate role name"}},
		{"tls half set", "[signer]\ntls_cert = \"/x\"\n", []string{"c.toml:2: signer.tls_cert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.in))
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.toml") {
		t.Fatalf("Load missing file: %v", err)
	}
}

func TestParseNodeRule(t *testing.T) {
	tests := []struct {
		in      string
		kind    NodeRuleKind
		lo, hi  uint16
		wantErr bool
	}{
		{"*.prod.internal", RuleGlob, 22, 22, false},
		{"node1:2222", RuleGlob, 2222, 2222, false},
		{"10.0.0.0/8", RulePrefix, 22, 22, false},
		{"10.0.0.5:1-1024", RulePrefix, 1, 1024, false},
		{"[fe80::/10]:22", RulePrefix, 22, 22, false},
		{"fe80::1", RulePrefix, 22, 22, false},
		{"label:env=prod", RuleLabel, 22, 22, false},
		{"label:env=prod:8022", RuleLabel, 8022, 8022, false},
		{"", 0, 0, 0, true},
		{"10.0.0.0/40", 0, 0, 0, true},
		{"host:0", 0, 0, 0, true},
		{"host:99999", 0, 0, 0, true},
		{"host:30-20", 0, 0, 0, true},
		{"label:env", 0, 0, 0, true},
		{"[fe80::1", 0, 0, 0, true},
		{"host:", 0, 0, 0, true},
		{"a[b", 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseNodeRule(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (r.Kind != tt.kind || r.PortLow != tt.lo || r.PortHigh != tt.hi) {
				t.Errorf("got kind %v ports %d-%d", r.Kind, r.PortLow, r.PortHigh)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[[role]]\nname=\"x\"\ngroups=[\"a\"]\nnodes=[\"label:a=b:1-2\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with error")
			}
			return
		}
		if c.Signer.Listen == "" || c.Bastion.Listen == "" {
			t.Fatal("defaults not applied")
		}
	})
}

func FuzzParseNodeRule(f *testing.F) {
	for _, s := range []string{"*.x", "10.0.0.0/8:22", "[::1]:22", "label:a=b", "h:1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseNodeRule(s)
		if err != nil {
			return
		}
		if r.PortLow == 0 || r.PortLow > r.PortHigh {
			t.Fatalf("%q: bad ports %d-%d", s, r.PortLow, r.PortHigh)
		}
		if r.Kind < RuleGlob || r.Kind > RuleLabel {
			t.Fatalf("%q: no kind", s)
		}
	})
}
