package client

import "testing"

func TestBannerText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"revoked", "postern: your access was revoked\r\n", "your access was revoked"},
		{"lines joined", "postern: the bastion cannot confirm access right now\r\n(try later)\r\n", "the bastion cannot confirm access right now (try later)"},
		{"terminal escapes", "\x1b]0;owned\x07postern: revoked\r\n", "]0;owned postern: revoked"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bannerText(tt.in); got != tt.want {
				t.Errorf("bannerText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
