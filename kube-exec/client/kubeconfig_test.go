package client

import (
	"os"
	"path/filepath"
	"strings"
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

// CurrentNamespace reads the person's kubeconfig files as client-go
// (kubectl) does: the same namespace for every way of setting it.
func TestCurrentNamespaceAsClientGo(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const ctxs = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts:
- name: dev
  context: {cluster: c, user: u, namespace: team-a}
- name: plain
  context: {cluster: c, user: u}
- name: dflt
  context: {cluster: c, user: u, namespace: default}
`
	full := write("full", ctxs+"current-context: dev\n")
	plain := write("plain", ctxs+"current-context: plain\n")
	dflt := write("dflt", ctxs+"current-context: dflt\n")
	noCurrent := write("nocurrent", ctxs)
	// A second file that redefines dev: the first definition wins.
	redefine := write("redefine", `contexts:
- name: dev
  context: {cluster: c, user: u, namespace: other}
current-context: dev
`)
	onlyCurrent := write("onlycurrent", "current-context: dev\n")
	json := write("json", `{"apiVersion":"v1","kind":"Config","clusters":[{"name":"c","cluster":{"server":"https://127.0.0.1:6443"}}],"users":[{"name":"u","user":{"token":"t"}}],"contexts":[{"name":"j","context":{"cluster":"c","user":"u","namespace":"jns"}}],"current-context":"j"}`)
	missing := filepath.Join(dir, "missing")
	list := func(p ...string) string { return strings.Join(p, string(filepath.ListSeparator)) }
	for _, env := range []string{
		full, plain, dflt, noCurrent, json, missing,
		list(full, redefine), list(redefine, full), list(onlyCurrent, full), list(noCurrent, onlyCurrent),
		list(missing, full), list(plain, full), list("", full),
	} {
		want := clientGoNamespace(env)
		if got := CurrentNamespace(env); got != want {
			t.Errorf("KUBECONFIG=%s: %q, client-go says %q", strings.ReplaceAll(env, dir+"/", ""), got, want)
		}
	}
	// The cases above are not all "": the comparison has teeth.
	if CurrentNamespace(full) != "team-a" || CurrentNamespace(list(redefine, full)) != "other" {
		t.Error("namespaces not read")
	}
	// Without KUBECONFIG: ~/.kube/config.
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), []byte(ctxs+"current-context: dev\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := CurrentNamespace(""); got != "team-a" {
		t.Errorf("~/.kube/config: %q, want team-a", got)
	}
}

// clientGoNamespace is what client-go's loading rules make of env, as
// kube-exec computed it before it read the files itself.
func clientGoNamespace(env string) string {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.Precedence = filepath.SplitList(env)
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).Namespace()
	if err != nil || ns == "default" {
		return ""
	}
	return ns
}
