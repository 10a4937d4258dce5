package config

import (
	"strings"
	"testing"
	"time"
)

func TestBastionRevocation(t *testing.T) {
	tests := []struct {
		name, toml string
		want       string // error substring; "" valid
		mode       string
		poll       time.Duration
	}{
		{"default polls the signer", "", "", RevocationSigner, DefaultRevPoll},
		{"explicit signer", "[signer]\nurl = \"https://signer.example.com:3080\"\n[bastion]\nrevocation_poll = \"5s\"\nrevocation_max_stale = \"1m\"", "", RevocationSigner, 5 * time.Second},
		{"file", "[bastion]\nkrl_file = \"/etc/ssh/postern.krl\"", "", RevocationFile, DefaultRevPoll},
		{"off", "[bastion]\nrevocation = \"off\"", "", RevocationOff, DefaultRevPoll},
		{"plain http signer: off by default", "[signer]\nurl = \"http://signer:3080\"", "", RevocationOff, DefaultRevPoll},
		{"plain http signer_url refused", "[bastion]\nrevocation = \"signer\"\nsigner_url = \"http://signer:3080\"", "bastion.signer_url", "", 0},
		{"file without krl_file", "[bastion]\nrevocation = \"file\"", "bastion.krl_file: required", "", 0},
		{"signer with krl_file", "[bastion]\nrevocation = \"signer\"\nkrl_file = \"/x\"", "bastion.krl_file", "", 0},
		{"unknown mode", "[bastion]\nrevocation = \"push\"", "bastion.revocation", "", 0},
		{"poll too short", "[bastion]\nrevocation_poll = \"10ms\"", "bastion.revocation_poll", "", 0},
		{"stale shorter than two polls", "[bastion]\nrevocation_max_stale = \"3s\"", "at least twice", "", 0},
		{"stale with revocation off", "[bastion]\nrevocation = \"off\"\nrevocation_max_stale = \"1m\"", "no effect", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tt.toml+"\n"))
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Parse err = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if b := c.Bastion; b.Revocation != tt.mode || b.RevocationPoll.Duration != tt.poll {
				t.Errorf("revocation %q poll %s, want %q %s", b.Revocation, b.RevocationPoll.Duration, tt.mode, tt.poll)
			}
		})
	}
}
