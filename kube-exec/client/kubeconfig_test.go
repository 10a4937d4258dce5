package client

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// client-go reads the kubeconfig kube-exec writes as kube-exec meant it.
func TestKubeconfigReadByClientGo(t *testing.T) {
	caPEM := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	for _, ns := range []string{"", "team-a"} {
		b, err := Kubeconfig("prod", "https://127.0.0.1:41234", caPEM, "tok\"en", ns)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatalf("load: %v\n%s", err, b)
		}
		name := ContextName("prod")
		ctx := cfg.Contexts[cfg.CurrentContext]
		cl, user := cfg.Clusters[name], cfg.AuthInfos[name]
		if cfg.CurrentContext != name || ctx == nil || cl == nil || user == nil {
			t.Fatalf("config %+v", cfg)
		}
		if ctx.Cluster != name || ctx.AuthInfo != name || ctx.Namespace != ns {
			t.Errorf("context %+v", ctx)
		}
		if cl.Server != "https://127.0.0.1:41234" || string(cl.CertificateAuthorityData) != string(caPEM) {
			t.Errorf("cluster %+v", cl)
		}
		if user.Token != "tok\"en" {
			t.Errorf("token %q", user.Token)
		}
	}
}

// kube-exec's loopback certificate is made once and reused; a damaged
// file is replaced.
func TestCachedLoopbackTLS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "home", ExecTLSFile)
	c1, pem1, err := CachedLoopbackTLS(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}
	c2, pem2, err := CachedLoopbackTLS(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(pem1) != string(pem2) || !c1.Leaf.Equal(c2.Leaf) {
		t.Error("the certificate was not reused")
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	c3, pem3, err := CachedLoopbackTLS(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(pem3) == string(pem1) || c3.Leaf == nil {
		t.Error("a damaged file was not replaced")
	}
	if _, pem4, _ := CachedLoopbackTLS(path); string(pem4) != string(pem3) {
		t.Error("the replacement was not kept")
	}
}
