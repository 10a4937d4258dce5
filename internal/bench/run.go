package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Config is one benchmark run. Zero values get the defaults of
// cmd/postern-bench.
type Config struct {
	// Bin holds postern-signer and postern-bastion.
	Bin string
	// BastionBin, when set, replaces Bin/postern-bastion (an unstripped
	// build, so that perf can name functions).
	BastionBin string
	// SignerBin likewise replaces Bin/postern-signer.
	SignerBin string
	// BastionB, when set, is another postern-bastion build run beside the
	// first on the same stack (its own port and data directory) and
	// measured in the ssh phases as bastion-b and bastion-b-rec, for A/B
	// comparisons of bastion changes in one interleaved run.
	BastionB string
	// BastionEnv is added to the bastion's environment (e.g. GOGC=400).
	BastionEnv []string
	// Dir is the work directory, removed and recreated.
	Dir string
	// Self is this program (started in the node namespace as the sink).
	Self string
	// Out is the Markdown report written at the end (and after each phase).
	Out string
	// Command is how the run was started, for the report.
	Command string
	// Phases to run: throughput, connect, handshake, idle, burst, signer,
	// keystroke, gobench, perf, kube; "wait" keeps the stack up until ctx ends.
	Phases map[string]bool

	Size    int64    // bytes per throughput transfer
	Rounds  int      // rounds of the throughput matrix
	Ciphers []string // "" is the client's default

	ConnectRuns int
	ConnectKex  []string

	IdleN       []int // idle sessions held through the bastion
	SSHDIdleMax int   // largest N tried on sshd (two processes each)
	BurstN      []int
	Keystrokes  int // keystrokes timed per path (0: 300)
	SignerTotal int // certificates asked per measurement
	SignerConc  []int
	GoBenchPkgs []string
	GoBenchTime string
	Root        string // module root, for go test
	PerfSeconds int
	// Kubernetes phase: KubeBin holds kube-apiserver, etcd and kubectl
	// (default: kubetest's cache, never built here); commands run
	// KubeRuns times per path, KubeRequests requests per path, KubePods
	// pods listed.
	KubeBin      string
	KubeExecB    string // another kube-exec build, measured beside (A/B)
	KubeRuns     int
	KubeRequests int
	KubePods     int

	Logf func(format string, args ...any)
}

// Run sets up the stack, runs the phases and writes the report.
func Run(ctx context.Context, cfg Config) error {
	raiseNoFile()
	r := &Report{Started: time.Now(), Config: cfg, Command: cfg.Command}
	r.Machine = machineInfo()
	write := func() {
		if cfg.Out == "" {
			return
		}
		if err := os.WriteFile(cfg.Out, []byte(r.Markdown()), 0o644); err != nil {
			cfg.Logf("write report: %v", err)
		}
		j, _ := json.MarshalIndent(r, "", "  ")
		_ = os.WriteFile(filepath.Join(cfg.Dir, "results.json"), j, 0o644)
	}
	if cfg.Phases["gobench"] {
		cfg.Logf("go benchmarks: %s", strings.Join(cfg.GoBenchPkgs, " "))
		r.GoBench = runGoBench(ctx, cfg)
	}
	st, err := StartStack(ctx, StackOptions{
		Dir: cfg.Dir, Bin: cfg.Bin, SignerBin: cfg.SignerBin, BastionBin: cfg.BastionBin,
		BastionB: cfg.BastionB, BastionEnv: cfg.BastionEnv, Self: cfg.Self, Logf: cfg.Logf,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.smoke(ctx); err != nil {
		return err
	}
	phases := []struct {
		name string
		run  func() error
	}{
		{"connect", func() error { var err error; r.Connect, err = st.runConnect(ctx, cfg); return err }},
		{"handshake", func() error { var err error; r.Handshake, err = st.runHandshake(ctx, cfg); return err }},
		{"throughput", func() error { var err error; r.Throughput, err = st.runThroughput(ctx, cfg); return err }},
		{"perf", func() error { var err error; r.Perf, err = st.runPerf(ctx, cfg); return err }},
		{"burst", func() error { var err error; r.Burst, err = st.runBurst(ctx, cfg); return err }},
		{"idle", func() error { var err error; r.Idle, err = st.runIdle(ctx, cfg); return err }},
		{"signer", func() error { var err error; r.Signer, err = st.runSigner(ctx, cfg); return err }},
		{"keystroke", func() error { var err error; r.Keystroke, err = st.runKeystroke(ctx, cfg); return err }},
		{"kube", func() error { var err error; r.Kube, err = st.runKube(ctx, cfg); return err }},
	}
	for _, p := range phases {
		if !cfg.Phases[p.name] {
			continue
		}
		start := time.Now()
		cfg.Logf("phase %s", p.name)
		if err := p.run(); err != nil {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %v", p.name, err))
			cfg.Logf("phase %s failed: %v", p.name, err)
		}
		r.PhaseTimes = append(r.PhaseTimes, PhaseTime{p.name, time.Since(start).Round(time.Second).String()})
		if ctx.Err() != nil {
			break
		}
		write()
	}
	r.Finished = time.Now()
	write()
	if cfg.Phases["wait"] {
		cfg.Logf("stack up (bastion %s, sshd jump %s, signer %s, client configs in %s/client); waiting for Ctrl-C", st.BastionAddr, st.JumpAddr, st.SignerURL, cfg.Dir)
		<-ctx.Done()
		return nil
	}
	return ctx.Err()
}

// Render rewrites the report from a results.json of an earlier run (after
// editing notes.md, say); cfg must carry the flags of that run.
func Render(cfg Config, results string) error {
	b, err := os.ReadFile(results)
	if err != nil {
		return err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("parse %s: %w", results, err)
	}
	r.Config = cfg
	return os.WriteFile(cfg.Out, []byte(r.Markdown()), 0o644)
}

// smoke checks every path once before anything is measured.
func (s *Stack) smoke(ctx context.Context) error {
	cfg, err := s.ClientConfig("", "")
	if err != nil {
		return err
	}
	for _, p := range s.sshPaths() {
		if _, err := s.Connect(ctx, cfg, p); err != nil {
			return fmt.Errorf("smoke test: %w", err)
		}
	}
	return nil
}

// raiseNoFile lifts the open-file limit (children inherit it): N idle
// sessions are 2N descriptors in the bastion; see noFileLimit. Raising
// the hard limit needs CAP_SYS_RESOURCE; without it the soft limit goes
// up to the hard one.
func raiseNoFile() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return
	}
	want := noFileLimit(rl.Max)
	if rl.Max < want && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
		return
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs    int
	CPU     string
	Kernel  string
	OpenSSH string
	Go      string
	MemGiB  float64
	Load    string
	// Revision is the source the binaries were built from.
	Revision string
}

func machineInfo() Machine {
	m := Machine{}
	out := func(name string, args ...string) string {
		b, _ := exec.Command(name, args...).CombinedOutput()
		return strings.TrimSpace(string(b))
	}
	fmt.Sscan(out("nproc"), &m.CPUs)
	for _, l := range strings.Split(out("lscpu"), "\n") {
		if v, ok := strings.CutPrefix(l, "Model name:"); ok {
			m.CPU = strings.TrimSpace(v)
		}
	}
	m.Kernel = out("uname", "-sr")
	m.Revision = out("git", "describe", "--tags", "--always", "--dirty")
	m.OpenSSH = out("ssh", "-V")
	m.Go = out("go", "version")
	m.MemGiB = memKiB("/proc/meminfo", "MemTotal") / (1 << 20)
	b, _ := os.ReadFile("/proc/loadavg")
	m.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	return m
}
