package policy

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/postern-dev/postern/internal/config"
)

func role(name string, groups, logins []string, ttl time.Duration, ext []string, pins []string) config.Role {
	return config.Role{Name: name, Groups: groups, Logins: logins, MaxTTL: config.Duration{Duration: ttl}, Extensions: ext, SourceAddresses: pins}
}

func TestDecide(t *testing.T) {
	roles := []config.Role{
		role("infra", []string{"infra"}, []string{"ubuntu", "root"}, 8*time.Hour, []string{"permit-pty", "permit-port-forwarding"}, nil),
		role("dev", []string{"dev", "eng"}, []string{"dev", "ubuntu"}, 2*time.Hour, []string{"permit-pty"}, nil),
		role("db", []string{"dba"}, []string{"postgres"}, 4*time.Hour, nil, []string{"10.0.0.0/8"}),
		role("empty", []string{"nologin"}, nil, time.Hour, nil, nil),
	}
	tests := []struct {
		name    string
		groups  []string
		want    Grant
		wantErr error
	}{
		{"infra only", []string{"infra", "other"}, Grant{
			Roles: []string{"infra"}, Logins: []string{"root", "ubuntu"}, MaxTTL: 8 * time.Hour,
			Extensions:      map[string]string{"permit-pty": "", "permit-port-forwarding": "", "roles@postern": "infra", "groups@postern": "infra,other"},
			CriticalOptions: map[string]string{},
		}, nil},
		{"two roles take the smaller ttl and union logins", []string{"dev", "infra"}, Grant{
			Roles: []string{"infra", "dev"}, Logins: []string{"dev", "root", "ubuntu"}, MaxTTL: 2 * time.Hour,
			Extensions:      map[string]string{"permit-pty": "", "permit-port-forwarding": "", "roles@postern": "infra,dev", "groups@postern": "dev,infra"},
			CriticalOptions: map[string]string{},
		}, nil},
		{"pinning survives an unpinned role", []string{"dba", "eng"}, Grant{
			Roles: []string{"dev", "db"}, Logins: []string{"dev", "postgres", "ubuntu"}, MaxTTL: 2 * time.Hour,
			Extensions:      map[string]string{"permit-pty": "", "roles@postern": "dev,db", "groups@postern": "dba,eng"},
			CriticalOptions: map[string]string{"source-address": "10.0.0.0/8"},
		}, nil},
		{"no group", nil, Grant{}, ErrNoRole},
		{"unknown group", []string{"sales"}, Grant{}, ErrNoRole},
		{"role without logins", []string{"nologin"}, Grant{}, ErrNoRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decide(roles, tt.groups)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("grant (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTTLCapped(t *testing.T) {
	g := Grant{MaxTTL: time.Hour}
	for _, tt := range []struct{ req, want time.Duration }{{0, time.Hour}, {time.Minute, time.Minute}, {48 * time.Hour, time.Hour}, {-5, time.Hour}} {
		if got := g.TTL(tt.req); got != tt.want {
			t.Errorf("TTL(%v) = %v, want %v", tt.req, got, tt.want)
		}
	}
}
