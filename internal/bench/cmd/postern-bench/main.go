// Command postern-bench runs postern's benchmarks against stock OpenSSH
// (internal/bench) and writes docs/benchmarks.md. It needs root.
//
//	postern-bench [flags]          run the benchmarks
//	postern-bench hold ADDR        (internal) the sink idle sessions forward to
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/postern-dev/postern/internal/bench"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "hold" {
		err := hold(os.Args[2]) // returns only on failure
		fmt.Fprintf(os.Stderr, "postern-bench: error: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "postern-bench: error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("postern-bench", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "`DIR` with postern-signer and postern-bastion")
	bastionBin := fs.String("bastion-bin", "", "postern-bastion to run instead of DIR/postern-bastion (an unstripped build for perf)")
	bastionB := fs.String("bastion-b", "", "another postern-bastion `BINARY` run beside the first on the same stack and measured in the ssh phases (throughput, connect, keystroke) as bastion-b, for A/B comparisons")
	signerBin := fs.String("signer-bin", "", "postern-signer to run instead of DIR/postern-signer (an unstripped build for perf)")
	bastionEnv := fs.String("bastion-env", "", "comma-separated `VAR=VALUE`s added to the bastion's environment (GOGC=400)")
	dir := fs.String("dir", ".cache/bench", "work `DIR` (recreated; keys, configs, logs, perf data)")
	out := fs.String("out", "docs/benchmarks.md", "report `FILE`")
	sizeMiB := fs.Int64("size", 1024, "MiB per throughput transfer")
	rounds := fs.Int("rounds", 3, "rounds of the throughput matrix")
	ciphers := fs.String("ciphers", "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com", "comma-separated ciphers (\"default\": the client's)")
	connectRuns := fs.Int("connect-runs", 50, "ssh -J … true runs per path")
	idle := fs.String("idle", "100,1000,5000,10000", "idle session counts")
	sshdIdleMax := fs.Int("sshd-idle-max", 1000, "largest idle count tried on sshd")
	burst := fs.String("burst", "100,1000", "burst sizes")
	signerTotal := fs.Int("signer-requests", 20000, "certificates asked per signer measurement")
	signerConc := fs.String("signer-clients", "16,64", "parallel signer clients")
	phases := fs.String("phases", "gobench,connect,handshake,throughput,perf,burst,idle,signer,keystroke,kube", "phases to run")
	kubeBin := fs.String("kube-bin", "", "`DIR` with kube-apiserver, etcd and kubectl (default: the cache make kube-bins fills; the kube phase is skipped without them)")
	kubeRuns := fs.Int("kube-runs", 40, "runs of each kubectl command in the kube phase")
	kubeRequests := fs.Int("kube-requests", 300, "API requests per path in the kube phase")
	kubeExecB := fs.String("kube-exec-b", "", "another kube-exec `BINARY` (an older build, say) measured beside bin/kube-exec in the kube phase")
	kubePods := fs.Int("kube-pods", 20, "pods kubectl lists in the kube phase")
	keystrokes := fs.Int("keystrokes", 300, "keystrokes timed per path")
	goPkgs := fs.String("gobench-pkgs", "./signer/ca,./internal/sshcert,./bastion/server", "packages whose Go benchmarks are the ceilings")
	benchtime := fs.String("benchtime", "1s", "go test -benchtime")
	netN := fs.Int("net", 0, "node network `N` (1-250): namespace pbN-node, 10.216.N.0/30, cgroups postern-bench-N-* (default: from a hash of -dir, so that two checkouts do not collide)")
	render := fs.String("render", "", "only rewrite the report from this results.json (give the flags of its run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	absDir, _ := filepath.Abs(*dir)
	if *netN < 1 || *netN > 250 {
		*netN = bench.NetFor(absDir)
	}
	bench.UseNet(*netN)
	absBin, _ := filepath.Abs(*bin)
	root, _ := os.Getwd()
	cfg := bench.Config{
		Bin: absBin, BastionBin: *bastionBin, BastionB: absPath(*bastionB), SignerBin: *signerBin, Dir: absDir, Self: self, Out: *out, Root: root,
		Command:      "make bench   # = " + strings.Join(append([]string{filepath.Base(os.Args[0])}, args...), " "),
		Phases:       map[string]bool{},
		Size:         *sizeMiB << 20,
		Rounds:       *rounds,
		ConnectRuns:  *connectRuns,
		ConnectKex:   []string{"curve25519-sha256"},
		IdleN:        ints(*idle),
		SSHDIdleMax:  *sshdIdleMax,
		BurstN:       ints(*burst),
		Keystrokes:   *keystrokes,
		SignerTotal:  *signerTotal,
		SignerConc:   ints(*signerConc),
		GoBenchPkgs:  strings.Split(*goPkgs, ","),
		GoBenchTime:  *benchtime,
		KubeBin:      *kubeBin,
		KubeRuns:     *kubeRuns,
		KubeRequests: *kubeRequests,
		KubePods:     *kubePods,
		KubeExecB:    *kubeExecB,
		Logf: func(format string, a ...any) {
			fmt.Fprintf(os.Stderr, "%s postern-bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
		},
	}
	if *bastionEnv != "" {
		cfg.BastionEnv = strings.Split(*bastionEnv, ",")
		cfg.Command += "   # bastion environment: " + *bastionEnv
	}
	for _, c := range strings.Split(*ciphers, ",") {
		if c == "default" {
			c = ""
		}
		cfg.Ciphers = append(cfg.Ciphers, c)
	}
	for _, p := range strings.Split(*phases, ",") {
		cfg.Phases[strings.TrimSpace(p)] = true
	}
	if *render != "" {
		return bench.Render(cfg, *render)
	}
	return bench.Run(ctx, cfg)
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// hold accepts connections and reads them until they close: the far end
// of idle sessions.
func hold(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// absPath makes p absolute ("" stays "").
func absPath(p string) string {
	if p == "" {
		return ""
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
