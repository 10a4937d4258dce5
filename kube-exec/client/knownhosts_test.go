package client

import "testing"

func TestMatchPatterns(t *testing.T) {
	tests := []struct {
		patterns []string
		name     string
		want     bool
	}{
		{[]string{"*"}, "[127.0.0.1]:2222", true},
		{[]string{"bastion.example.com"}, "bastion.example.com", true},
		{[]string{"*.example.com"}, "bastion.example.com", true},
		{[]string{"*.example.com", "!evil.example.com"}, "evil.example.com", false},
		{[]string{"b?stion"}, "bastion", true},
		{[]string{"bastion"}, "[bastion]:2222", false},
	}
	for _, tt := range tests {
		if got := matchPatterns(tt.patterns, tt.name); got != tt.want {
			t.Errorf("matchPatterns(%v, %q) = %v", tt.patterns, tt.name, got)
		}
	}
	if got := knownhostsName("h:22"); got != "h" {
		t.Errorf("knownhostsName = %q", got)
	}
}
