package server

import (
	"log/slog"
	"testing"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/sshcert"
)

// TestRecordingFor: the roles the hop runs under decide recording; a role
// of the person that does not reach the node (kube-only, say, with the
// default recording = "on") has no say; a node's own setting wins.
func TestRecordingFor(t *testing.T) {
	box := &policyBox{}
	box.cur.Store(&policyState{
		roles: map[string]config.Role{
			"ops":      {Name: "ops", Recording: "off"},
			"kube-dev": {Name: "kube-dev", Recording: "on"},
			"audited":  {Name: "audited", Recording: "on", RecordInput: true},
		},
		nodes: map[string]string{"vault": "on", "scratch": "off"},
	})
	s := &Server{rec: &recording{}, policy: box}
	p := &principal{id: sshcert.Identity{Roles: []string{"ops", "kube-dev"}}}
	for _, tt := range []struct {
		name      string
		dec       authz.Decision
		on, input bool
	}{
		{"only the allowing role counts", authz.Decision{Roles: []string{"ops"}}, false, false},
		{"any allowing role that records", authz.Decision{Roles: []string{"ops", "audited"}}, true, true},
		{"node forces on", authz.Decision{Roles: []string{"ops"}, Node: "vault"}, true, false},
		{"node forces off", authz.Decision{Roles: []string{"audited"}, Node: "scratch"}, false, true},
		{"no roles named: the person's", authz.Decision{}, true, false},
	} {
		on, input := s.recordingFor(p, tt.dec)
		if on != tt.on || input != tt.input {
			t.Errorf("%s: recording %v, input %v; want %v, %v", tt.name, on, input, tt.on, tt.input)
		}
	}
}

// TestReloadSwapsRoleSettings: SIGHUP's Reload applies the roles' kube
// access and recording settings and the nodes' recording, not only node
// rules; a configuration that fails to build keeps the old one.
func TestReloadSwapsRoleSettings(t *testing.T) {
	parse := func(recording, cluster, nodeRec string) *config.Config {
		cfg, err := config.Parse("r.toml", []byte(`
[[bastion.node]]
name = "n1"
addr = "10.1.0.1"
recording = "`+nodeRec+`"
[[role]]
name = "dev"
groups = ["dev"]
nodes = ["n1"]
recording = "`+recording+`"
kube_clusters = ["`+cluster+`"]
`))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	box, err := newPolicyBox(parse("off", "staging", ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{rec: &recording{}, policy: box, log: slog.New(slog.DiscardHandler)}
	p := &principal{id: sshcert.Identity{Roles: []string{"dev"}}}
	check := func(when string, wantRec bool, allowed, denied string) {
		t.Helper()
		if on, _ := s.recordingFor(p, authz.Decision{Roles: []string{"dev"}, Node: "n1"}); on != wantRec {
			t.Errorf("%s: recording %v, want %v", when, on, wantRec)
		}
		if _, ok := s.policy.state().cfg.KubeAccessFor(p.id.Roles, allowed); !ok {
			t.Errorf("%s: cluster %s not allowed", when, allowed)
		}
		if _, ok := s.policy.state().cfg.KubeAccessFor(p.id.Roles, denied); ok {
			t.Errorf("%s: cluster %s still allowed", when, denied)
		}
	}
	check("before", false, "staging", "prod")
	if err := s.Reload(parse("on", "prod", "")); err != nil {
		t.Fatal(err)
	}
	check("after reload", true, "prod", "staging")
	if err := s.Reload(parse("on", "prod", "off")); err != nil {
		t.Fatal(err)
	}
	check("node off", false, "prod", "staging")
	bad := parse("on", "prod", "")
	bad.Roles[0].Nodes = []string{"label:"}
	if err := s.Reload(bad); err == nil {
		t.Fatal("a bad node rule was accepted")
	}
	check("after a refused reload", false, "prod", "staging")
}
