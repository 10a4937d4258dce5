package server

import (
	"testing"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/sshcert"
)

// TestRecordingFor: the roles the hop runs under decide recording; a role
// of the person that does not reach the node (kube-only, say, with the
// default recording = "on") has no say; a node's own setting wins.
func TestRecordingFor(t *testing.T) {
	s := &Server{rec: &recording{
		roles: map[string]config.Role{
			"ops":      {Name: "ops", Recording: "off"},
			"kube-dev": {Name: "kube-dev", Recording: "on"},
			"audited":  {Name: "audited", Recording: "on", RecordInput: true},
		},
		nodes: map[string]string{"vault": "on", "scratch": "off"},
	}}
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
