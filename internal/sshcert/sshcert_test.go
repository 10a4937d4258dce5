package sshcert

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestCheckCriticalOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    map[string]string
		remote  string
		wantErr error
	}{
		{"none", nil, "10.0.0.1", nil},
		{"source ok", map[string]string{OptSourceAddress: "10.0.0.0/8,192.0.2.1"}, "10.1.2.3", nil},
		{"source single ok", map[string]string{OptSourceAddress: "10.0.0.0/8,192.0.2.1"}, "192.0.2.1", nil},
		{"source mapped v4", map[string]string{OptSourceAddress: "10.0.0.0/8"}, "::ffff:10.0.0.9", nil},
		{"source refused", map[string]string{OptSourceAddress: "10.0.0.0/8"}, "192.0.2.1", ErrSourceAddress},
		{"source without remote", map[string]string{OptSourceAddress: "10.0.0.0/8"}, "", ErrSourceAddress},
		{"force-command unknown to verifiers", map[string]string{OptForceCommand: "id"}, "10.0.0.1", ErrUnknownCriticalOption},
		{"unknown", map[string]string{"verify-required": ""}, "10.0.0.1", ErrUnknownCriticalOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &ssh.Certificate{Permissions: ssh.Permissions{CriticalOptions: tt.opts}}
			var a netip.Addr
			if tt.remote != "" {
				a = netip.MustParseAddr(tt.remote)
			}
			err := CheckCriticalOptions(c, a)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestIdentityOf(t *testing.T) {
	c := &ssh.Certificate{KeyId: "alice@example.com", Serial: 7, ValidPrincipals: []string{"ubuntu"},
		ValidAfter: 100, ValidBefore: 200,
		Permissions: ssh.Permissions{Extensions: map[string]string{ExtRoles: "infra,dev", ExtGroups: "g1"}}}
	id := IdentityOf(c)
	if id.KeyID != "alice@example.com" || id.Serial != 7 || len(id.Roles) != 2 || id.Roles[1] != "dev" || id.Groups[0] != "g1" || id.ValidBefore.Unix() != 200 {
		t.Fatalf("IdentityOf = %+v", id)
	}
}
