package menu

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/sshcert"
)

func TestRun(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rule, _ := config.ParseNodeRule("label:env=prod")
	env := Env{
		Identity: sshcert.Identity{KeyID: "alice@example.com", Serial: 7, Roles: []string{"ops", "ghost"},
			Principals: []string{"ubuntu"}, ValidBefore: now.Add(90 * time.Minute)},
		ClientAddr: "198.51.100.1:5555", BastionID: "b1", BastionName: "jump", Now: now,
		Rules:        []authz.Rule{{Role: "ops", NodeRule: rule}},
		UnknownRoles: []string{"ghost"},
		Reachable:    []authz.Reach{{Node: authz.Node{Name: "db1", Addr: "10.0.0.9"}, Ports: "22", ByRule: "ops: label:env=prod"}},
	}
	tests := []struct {
		cmd      string
		code     int
		out, err []string
		noOut    bool
	}{
		{cmd: "whoami", out: []string{"alice@example.com", "ops", "ghost", "grant nothing", "ubuntu", "serial:  7", "2026-01-02T04:34:05Z (1h30m0s left)", "198.51.100.1:5555", "b1"}},
		{cmd: "  nodes  ", out: []string{"db1", "10.0.0.9", "ops: label:env=prod", "label:env=prod"}},
		{cmd: "help", out: []string{"ssh -J jump NODE", "whoami", "nodes"}},
		{cmd: "--help", out: []string{"ssh -J jump NODE"}},
		{cmd: "", out: []string{"Commands (ssh jump COMMAND)"}},
		{cmd: "nodes --all", code: ExitUsage, err: []string{"nodes takes no arguments"}, noOut: true},
		{cmd: "sh -c id", code: ExitUnknown, err: []string{"unknown command sh", "hint: ssh jump help"}, noOut: true},
		{cmd: "\x1b]0;pwned\x07", code: ExitUnknown, err: []string{`"\x1b]0;pwned\a"`}, noOut: true},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			var o, e bytes.Buffer
			code := Run(tt.cmd, &o, &e, env)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			for _, w := range tt.out {
				if !strings.Contains(o.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, o.String())
				}
			}
			for _, w := range tt.err {
				if !strings.Contains(e.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, e.String())
				}
			}
			if tt.noOut && o.Len() > 0 {
				t.Errorf("stdout = %q, want nothing", o.String())
			}
			if strings.ContainsRune(e.String(), '\x1b') {
				t.Errorf("raw escape reached the client: %q", e.String())
			}
		})
	}
	var o bytes.Buffer
	Shell(&o, env)
	if !strings.Contains(o.String(), "there is no shell here") || !strings.Contains(o.String(), "Commands") {
		t.Errorf("Shell = %q", o.String())
	}
	o.Reset()
	Run("nodes", &o, &o, Env{UnknownRoles: []string{"x"}})
	if !strings.Contains(o.String(), "allow no nodes") || !strings.Contains(o.String(), "x") {
		t.Errorf("nodes without rules = %q", o.String())
	}
}
