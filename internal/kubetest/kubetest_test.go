package kubetest

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// The version the package reports is the one build/go.mod pins, and every
// k8s.io staging module is replaced with the published tag of the same
// release (Kubernetes v1.Y.Z ships staging modules v0.Y.Z).
func TestVersionMatchesBuildModule(t *testing.T) {
	data, err := os.ReadFile("build/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	staging := "v0" + strings.TrimPrefix(Version, "v1")
	var kube string
	replaced := 0
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "k8s.io/kubernetes":
			kube = f[1]
		case len(f) == 4 && f[1] == "=>" && strings.HasPrefix(f[0], "k8s.io/"):
			replaced++
			if f[2] != f[0] || f[3] != staging {
				t.Errorf("build/go.mod: %s, want %s => %s %s", strings.TrimSpace(line), f[0], f[0], staging)
			}
		}
	}
	if kube != Version {
		t.Errorf("build/go.mod requires k8s.io/kubernetes %q, Version is %q; run build/update.sh and change Version with it", kube, Version)
	}
	if replaced < 20 {
		t.Errorf("build/go.mod replaces %d k8s.io modules, want every staging module (about 30)", replaced)
	}
}

// A forwarder whose only right is to impersonate acts for alice, and RBAC
// judges alice: she may read pods in team-a and nothing in default.
func TestImpersonationJudgedByRBAC(t *testing.T) {
	c := Start(t)

	t.Run("version", func(t *testing.T) {
		out, stderr, err := c.Kubectl(t, "version", "-o", "json")
		if err != nil {
			t.Fatalf("kubectl version: %v\n%s", err, stderr)
		}
		var v struct {
			Client struct{ GitVersion, Major, Minor string } `json:"clientVersion"`
			Server struct{ GitVersion, Major, Minor string } `json:"serverVersion"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("decode kubectl version: %v\n%s", err, out)
		}
		for side, got := range map[string]string{"client": v.Client.GitVersion, "server": v.Server.GitVersion} {
			if got != Version {
				t.Errorf("%s version %q, want %q", side, got, Version)
			}
		}
		if want := strings.Join(strings.Split(strings.TrimPrefix(Version, "v"), ".")[:2], "."); v.Server.Major+"."+v.Server.Minor != want {
			t.Errorf("server major.minor %s.%s, want %s", v.Server.Major, v.Server.Minor, want)
		}
	})

	c.Apply(t, TeamRBAC)
	fwd := c.UserKubeconfig(t, "postern-forwarder", nil)
	asAlice := []string{"--kubeconfig", fwd, "--as", "alice@example.com", "--as-group", "team-a-devs"}

	tests := []struct {
		name      string
		args      []string
		wantErr   string // in stderr; "" means success
		wantInOut string
	}{
		{
			name:      "alice lists pods in team-a",
			args:      slices.Concat(asAlice, []string{"get", "pods", "-n", "team-a"}),
			wantInOut: "",
		},
		{
			name:      "alice creates a configmap in team-a",
			args:      slices.Concat(asAlice, []string{"create", "configmap", "hello", "-n", "team-a", "--from-literal=k=v"}),
			wantInOut: "configmap/hello created",
		},
		{
			name:    "alice is forbidden in default",
			args:    slices.Concat(asAlice, []string{"get", "pods", "-n", "default"}),
			wantErr: `User "alice@example.com" cannot list resource "pods" in API group "" in the namespace "default"`,
		},
		{
			name:    "alice cannot read secrets in team-a",
			args:    slices.Concat(asAlice, []string{"get", "secrets", "-n", "team-a"}),
			wantErr: `cannot list resource "secrets"`,
		},
		{
			name:    "the forwarder itself may only impersonate",
			args:    []string{"--kubeconfig", fwd, "get", "pods", "-n", "team-a"},
			wantErr: `User "postern-forwarder" cannot list resource "pods"`,
		},
		{
			name:    "without the impersonate right nobody becomes alice",
			args:    []string{"--kubeconfig", c.UserKubeconfig(t, "mallory", []string{"team-a-devs"}), "--as", "alice@example.com", "get", "pods", "-n", "team-a"},
			wantErr: `User "mallory" cannot impersonate`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := c.Kubectl(t, tt.args...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("kubectl %s: %v\n%s", strings.Join(tt.args, " "), err, stderr)
				}
				if !strings.Contains(out, tt.wantInOut) {
					t.Errorf("stdout %q does not contain %q", out, tt.wantInOut)
				}
				return
			}
			if err == nil {
				t.Fatalf("kubectl %s succeeded, want it forbidden; stdout:\n%s", strings.Join(tt.args, " "), out)
			}
			if !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("kubectl %s: %v; stderr:\n%s\nstdout:\n%s\nwant Forbidden and %q", strings.Join(tt.args, " "), err, stderr, out, tt.wantErr)
			}
		})
	}
}
