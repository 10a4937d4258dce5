package kubeproto

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseSubsystem(t *testing.T) {
	tests := []struct {
		name, in, cluster string
		ok, bad           bool
	}{
		{name: "cluster", in: "kube/prod", cluster: "prod", ok: true},
		{name: "dotted", in: "kube/eu-1.prod", cluster: "eu-1.prod", ok: true},
		{name: "sftp", in: "sftp"},
		{name: "empty cluster", in: "kube/", ok: true, bad: true},
		{name: "slash", in: "kube/a/b", ok: true, bad: true},
		{name: "upper", in: "kube/Prod", ok: true, bad: true},
		{name: "comma", in: "kube/a,b", ok: true, bad: true},
		{name: "leading dash", in: "kube/-a", ok: true, bad: true},
		{name: "too long", in: "kube/" + strings.Repeat("a", 64), ok: true, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok, err := ParseSubsystem(tt.in)
			if ok != tt.ok || (err != nil) != tt.bad || (err == nil && c != tt.cluster) {
				t.Errorf("ParseSubsystem(%q) = %q, %v, %v", tt.in, c, ok, err)
			}
			if tt.bad && !errors.Is(err, ErrBadCluster) {
				t.Errorf("error %v is not ErrBadCluster", err)
			}
		})
	}
}

func TestForwarderClusters(t *testing.T) {
	got := ForwarderClusters([]string{"node1", "kube-forwarder/prod", "kube-forwarder/", "kube-forwarder/a/b", ForwarderPrincipal("dev")})
	if want := []string{"prod", "dev"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	id := Identity{Person: "alice@example.com", Cluster: "prod", Users: []string{"alice@example.com"}, Groups: []string{"dev"}}
	got, err := ParseIdentity(id.Marshal())
	if err != nil || got.Person != id.Person || !slices.Equal(got.Groups, id.Groups) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{`{}`, `{"person":"a","cluster":"prod","users":[""]}`, `{"person":"a","cluster":"../x","users":["a"]}`, `not json`} {
		if _, err := ParseIdentity([]byte(bad)); err == nil {
			t.Errorf("ParseIdentity(%s) accepted", bad)
		}
	}
}

func FuzzParseSubsystem(f *testing.F) {
	for _, s := range []string{"kube/prod", "kube/", "sftp", "kube/a/b", "kube/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok, err := ParseSubsystem(s)
		if !ok && (c != "" || err != nil) {
			t.Fatalf("not a kube subsystem but %q, %v", c, err)
		}
		if err == nil && ok {
			if Subsystem(c) != s || strings.ContainsAny(c, "/,\x00 ") {
				t.Fatalf("cluster %q from %q", c, s)
			}
			if got := ForwarderClusters([]string{ForwarderPrincipal(c)}); len(got) != 1 || got[0] != c {
				t.Fatalf("principal round trip %q: %v", c, got)
			}
		}
	})
}
