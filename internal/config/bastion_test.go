package config

import (
	"strings"
	"testing"
)

func TestBastionInventoryValidation(t *testing.T) {
	tests := []struct {
		name, node, want string
	}{
		{"ip", `name = "n1"` + "\n" + `addr = "10.0.0.5"`, ""},
		{"ipv6", `name = "n1"` + "\n" + `addr = "fd00::5"`, ""},
		{"dns", `name = "n1"` + "\n" + `addr = "n1.prod.internal"`, ""},
		{"with port", `name = "n1"` + "\n" + `addr = "10.0.0.5:22"`, "bastion.node[0].addr"},
		{"bracketed", `name = "n1"` + "\n" + `addr = "[fd00::5]"`, "bastion.node[0].addr"},
		{"zone", `name = "n1"` + "\n" + `addr = "fe80::1%eth0"`, "zones"},
		{"bad label key", `name = "n1"` + "\n" + `addr = "10.0.0.5"` + "\n" + `labels = { "a=b" = "c" }`, "bad label key"},
		{"missing addr", `name = "n1"`, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte("[[bastion.node]]\n"+tt.node+"\n"))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestBastionDefaults(t *testing.T) {
	c := Default()
	if c.Bastion.DialTimeout.Duration != DefaultDialTimeout || c.Bastion.HandshakeTimeout.Duration != DefaultHandshake {
		t.Errorf("timeouts = %v, %v", c.Bastion.DialTimeout, c.Bastion.HandshakeTimeout)
	}
}

// FuzzNodeRuleInvariants: no panics; an accepted rule has a kind, a sane port
// range, and its parts are consistent with the kind.
func FuzzNodeRuleInvariants(f *testing.F) {
	for _, s := range []string{"*.prod.internal", "10.0.0.0/8:22-2222", "[fd00::/64]:22", "label:env=prod:5432", "node1:", "10.0.0.5", "[::1]", "label:a=b=c", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseNodeRule(s)
		if err != nil {
			return
		}
		if r.PortLow == 0 || r.PortHigh < r.PortLow {
			t.Fatalf("%q: ports %d-%d", s, r.PortLow, r.PortHigh)
		}
		switch r.Kind {
		case RuleGlob:
			if r.Glob == "" || r.Glob != strings.ToLower(r.Glob) {
				t.Fatalf("%q: glob %q", s, r.Glob)
			}
		case RulePrefix:
			if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() {
				t.Fatalf("%q: prefix %v", s, r.Prefix)
			}
		case RuleLabel:
			if r.LabelKey == "" || r.LabelValue == "" {
				t.Fatalf("%q: label %q=%q", s, r.LabelKey, r.LabelValue)
			}
		default:
			t.Fatalf("%q: no kind", s)
		}
	})
}
