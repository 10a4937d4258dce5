package forwarder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/metrics"
)

// Options are a forwarder's collaborators.
type Options struct {
	Logger *slog.Logger
	Audit  audit.Emitter
}

// Run serves the configured cluster through every configured bastion
// until ctx is done.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	f := cfg.Kube.Forwarder
	log := opts.Logger
	signer, err := LoadIdentity(f.HostKey, f.HostCert, f.Cluster, time.Now())
	if err != nil {
		return err
	}
	cas, err := loadCAs(f.HostCA)
	if err != nil {
		return err
	}
	target, rt, upgrade, err := APITransport(f.Kubeconfig, f.Context)
	if err != nil {
		return err
	}
	m := newFwdMetrics(f.Bastions)
	if f.MetricsListen != "" {
		ln, err := metrics.Listen(f.MetricsListen)
		if err != nil {
			return err
		}
		api := newAPIProbe(target, rt)
		go m.reg.Serve(ctx, ln, func() error { return ready(m, api) }, log)
	}
	p := &Proxy{Cluster: f.Cluster, Target: target, Transport: rt, UpgradeTransport: upgrade, Audit: metrics.CountingEmitter{Inner: opts.Audit, Errors: m.auditErrs, Observe: m.observe}, Logger: log}
	p.Init()
	ln := newChanListener()
	srv := &http.Server{
		Handler: p,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc, ok := c.(interface{ identity() kubeproto.Identity }); ok {
				return WithIdentity(ctx, cc.identity())
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() { _ = srv.Serve(ln) }()
	log.Info("forwarder started", "cluster", f.Cluster, "api_server", target.String(), "bastions", f.Bastions)

	var wg sync.WaitGroup
	for _, addr := range f.Bastions {
		t := &Tunnel{
			Addr: addr, Cluster: f.Cluster, ID: f.ID, Signer: signer, HostCAs: cas,
			KeepAlive: cfg.Kube.KeepAlive.Duration, MinBackoff: f.MinBackoff.Duration, MaxBackoff: f.MaxBackoff.Duration,
			DialTimeout: f.DialTimeout.Duration, Logger: log,
			Deliver: func(ch ssh.Channel, id kubeproto.Identity, bastion string) {
				ln.deliver(m.count(newChannelConn(ch, id, bastion)))
			},
			metrics: m,
		}
		wg.Add(1)
		go func() { defer wg.Done(); t.Run(ctx) }()
	}
	<-ctx.Done()
	log.Info("forwarder stopping")
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	ln.Close()
	return nil
}

// APITransport loads the forwarder's credential from a kubeconfig (the
// in-cluster service account when path is empty) and returns the API
// server's URL, a transport carrying the credential, and one restricted
// to HTTP/1.1 for upgrade requests. Impersonation configured in the
// kubeconfig itself is ignored: the forwarder sets its own.
func APITransport(path, kubeContext string) (*url.URL, http.RoundTripper, http.RoundTripper, error) {
	var rc *rest.Config
	var err error
	if path == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
		over := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, over).ClientConfig()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load the forwarder's kubeconfig: %w", err)
	}
	rc.Impersonate = rest.ImpersonationConfig{}
	target, err := url.Parse(rc.Host)
	if err != nil || target.Host == "" {
		// rest.Config.Host may be a bare host:port
		if target, err = url.Parse("https://" + rc.Host); err != nil {
			return nil, nil, nil, fmt.Errorf("parse API server address %q: %w", rc.Host, err)
		}
	}
	if rc.APIPath != "" && rc.APIPath != "/api" {
		return nil, nil, nil, fmt.Errorf("kubeconfig API path %q is not supported", rc.APIPath)
	}
	rt, err := rest.TransportFor(rc)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("build API transport: %w", err)
	}
	h1 := rest.CopyConfig(rc)
	h1.NextProtos = []string{"http/1.1"}
	up, err := rest.TransportFor(h1)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("build API upgrade transport: %w", err)
	}
	return target, rt, up, nil
}

// LoadIdentity reads the forwarder's host key (generating an Ed25519 key
// when the file does not exist) and its host certificate, and checks that
// the certificate certifies the key for cluster and is valid at now.
func LoadIdentity(keyPath, certPath, cluster string, now time.Time) (ssh.Signer, error) {
	data, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		if err := generateKey(keyPath); err != nil {
			return nil, err
		}
		data, err = os.ReadFile(keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s is readable by others (mode %o): chmod 600 it", keyPath, fi.Mode().Perm())
	}
	key, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse host key %s: %w", keyPath, err)
	}
	hint := fmt.Sprintf("certify it on the signer's host: postern-signer host-cert --config FILE --host %s --pubkey %s.pub, then copy the certificate to %s",
		kubeproto.ForwarderPrincipal(cluster), keyPath, certPath)
	cdata, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read host certificate: %w; %s", err, hint)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(cdata)
	if err != nil {
		return nil, fmt.Errorf("parse host certificate %s: %w", certPath, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	switch {
	case !ok || cert.CertType != ssh.HostCert:
		return nil, fmt.Errorf("%s is not a host certificate; %s", certPath, hint)
	case !bytes.Equal(cert.Key.Marshal(), key.PublicKey().Marshal()):
		return nil, fmt.Errorf("host certificate %s does not certify %s; %s", certPath, keyPath, hint)
	case !slices.Contains(kubeproto.ForwarderClusters(cert.ValidPrincipals), cluster):
		return nil, fmt.Errorf("host certificate %s does not name %s (principals %v); %s", certPath, kubeproto.ForwarderPrincipal(cluster), cert.ValidPrincipals, hint)
	case cert.ValidBefore != ssh.CertTimeInfinity && now.Unix() >= int64(cert.ValidBefore):
		return nil, fmt.Errorf("host certificate %s expired at %s; %s", certPath, time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339), hint)
	}
	return ssh.NewCertSigner(cert, key)
}

func generateKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "postern kube forwarder")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write host key: %w", err)
	}
	if _, err := f.Write(pemEncode(block)); err != nil {
		f.Close()
		return fmt.Errorf("write host key: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	return os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644)
}

// loadCAs reads CA public keys in authorized_keys format.
func loadCAs(path string) ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read host CA: %w", err)
	}
	var out []ssh.PublicKey
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("parse host CA %s: %w", path, err)
		}
		out = append(out, k)
		rest = r
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parse host CA %s: no keys", path)
	}
	return out, nil
}
