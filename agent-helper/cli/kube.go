package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/postern-dev/postern/internal/kubeproto"
)

const kubeUsage = `postern kube config writes a kubeconfig context "postern-CLUSTER" that points
at a running "kube-exec proxy --cluster CLUSTER" (run it once first: it makes
the token and certificate the context uses). It runs kubectl config.`

// cmdKube dispatches "postern kube SUBCOMMAND".
func cmdKube(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] != "config" {
		return hinted(errors.New("usage: postern kube config --cluster NAME"), "then: kube-exec proxy --cluster NAME, and kubectl --context postern-NAME ...")
	}
	fs := newFlags("kube config", env, kubeUsage)
	cluster := fs.String("cluster", "", "cluster `NAME`")
	server := fs.String("server", "", "the proxy's `URL` (default https://127.0.0.1:PORT, the port kube-exec proxy picks for the cluster)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig `FILE` to write (default: kubectl's, $KUBECONFIG or ~/.kube/config)")
	printOnly := fs.Bool("print", false, "print the kubectl commands instead of running them")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := kubeproto.ValidCluster(*cluster); err != nil {
		return hinted(err, "postern kube config --cluster NAME")
	}
	if *server == "" {
		*server = fmt.Sprintf("https://127.0.0.1:%d", kubeproto.ProxyPort(*cluster))
	}
	tok, err := os.ReadFile(filepath.Join(env.Home, kubeproto.ProxyTokenFile))
	certPath := filepath.Join(env.Home, kubeproto.ProxyCertFile)
	_, cerr := os.Stat(certPath)
	if err != nil || cerr != nil {
		return hinted(errors.New("no kube-exec proxy token or certificate yet"), "run kube-exec proxy --cluster "+*cluster+" once first")
	}
	name := "postern-" + *cluster
	var base []string
	if *kubeconfig != "" {
		base = []string{"--kubeconfig", *kubeconfig}
	}
	cmds := [][]string{
		{"config", "set-cluster", name, "--server", *server, "--certificate-authority", certPath, "--embed-certs=true"},
		{"config", "set-credentials", name, "--token", strings.TrimSpace(string(tok))},
		{"config", "set-context", name, "--cluster", name, "--user", name},
	}
	for _, c := range cmds {
		full := append(append([]string{}, base...), c...)
		if *printOnly {
			fmt.Fprintln(env.Stdout, "kubectl "+strings.Join(full, " "))
			continue
		}
		cmd := exec.CommandContext(ctx, "kubectl", full...)
		cmd.Stderr = env.Stderr
		if err := cmd.Run(); err != nil {
			return hinted(fmt.Errorf("kubectl %s: %w", strings.Join(c[:2], " "), err), "is kubectl installed? postern kube config --print shows the commands")
		}
	}
	if !*printOnly {
		fmt.Fprintf(env.Stdout, "wrote context %s (server %s)\nnow: kube-exec proxy --cluster %s, then kubectl --context %s get pods\n", name, *server, *cluster, name)
	}
	return nil
}
