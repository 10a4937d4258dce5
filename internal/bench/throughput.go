package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ThroughputResult is one cell of the throughput matrix.
type ThroughputResult struct {
	Cipher string // "" is the client's default
	Up     bool   // client to node
	Path   string
	MiBps  Sample
	// CPUPerGiB is the jump host's CPU seconds per GiB moved (empty for
	// direct).
	CPUPerGiB Sample
}

const gib = 1 << 30

// runThroughput moves cfg.Size bytes each way through every path, for
// every cipher, interleaving the paths and reversing their order every
// other round.
func (s *Stack) runThroughput(ctx context.Context, cfg Config) ([]ThroughputResult, error) {
	paths := s.sshPaths()
	type key struct {
		cipher string
		up     bool
		path   string
	}
	mib := map[key][]float64{}
	cpu := map[key][]float64{}
	errs := failures[key]{}
	for round := range cfg.Rounds {
		order := slices.Clone(paths)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range cfg.Ciphers {
			cf, err := s.ClientConfig(c, "")
			if err != nil {
				return nil, err
			}
			for _, up := range []bool{true, false} {
				for _, p := range order {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					k := key{c, up, p.Name}
					before := s.jumpCPU(p)
					d, err := s.Transfer(ctx, cf, p, up, cfg.Size)
					if err != nil {
						errs.add(k, err)
						cfg.Logf("throughput %s: %v", p.Name, err)
						continue
					}
					after := s.jumpCPU(p)
					mib[k] = append(mib[k], float64(cfg.Size)/(1<<20)/d.Seconds())
					if p != PathDirect {
						cpu[k] = append(cpu[k], (after-before)/(float64(cfg.Size)/gib))
					}
					cfg.Logf("throughput round %d %-18s %-4s %-11s %7.1f MiB/s  jump CPU %.2f s/GiB", round+1, cipherName(c), dirName(up), p.Name,
						float64(cfg.Size)/(1<<20)/d.Seconds(), (after-before)/(float64(cfg.Size)/gib))
				}
			}
		}
	}
	var out []ThroughputResult
	for _, c := range cfg.Ciphers {
		for _, up := range []bool{true, false} {
			for _, p := range paths {
				k := key{c, up, p.Name}
				r := ThroughputResult{Cipher: c, Up: up, Path: p.Name, MiBps: Summarise(mib[k]), CPUPerGiB: Summarise(cpu[k])}
				errs.into(k, &r.MiBps)
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// jumpCPU is the CPU seconds used so far by the jump host of p: the
// bastion's own, or the sshd listener's including its reaped children
// (it waits for them to be reaped first).
func (s *Stack) jumpCPU(p Path) float64 {
	switch p.Jump {
	case "sshd-jump":
		waitNoChildren(s.Jump.Pid(), 3*time.Second)
		if s.jumpCPUGroup != nil {
			if v, err := s.jumpCPUGroup.seconds(); err == nil {
				return v
			}
		}
		v, _ := procCPU(s.Jump.Pid(), true)
		return v
	case "bastion":
		time.Sleep(50 * time.Millisecond) // the session's last packets
		if s.bastionCPUGroup != nil {
			if v, err := s.bastionCPUGroup.seconds(); err == nil {
				return v
			}
		}
		v, _ := procCPU(s.Bastion.Pid(), false)
		return v
	case "bastion-b":
		time.Sleep(50 * time.Millisecond)
		if s.bastionBCPUGroup != nil {
			if v, err := s.bastionBCPUGroup.seconds(); err == nil {
				return v
			}
		}
		v, _ := procCPU(s.BastionB.Pid(), false)
		return v
	}
	return 0
}

func cipherName(c string) string {
	if c == "" {
		return "default"
	}
	return c
}

func dirName(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// ConnectResult is connection setup through one path with one KEX.
type ConnectResult struct {
	Kex  string
	Path string
	Ms   Sample
}

// runConnect times `ssh [-J jump] node true`, paths interleaved.
func (s *Stack) runConnect(ctx context.Context, cfg Config) ([]ConnectResult, error) {
	paths := s.sshPaths()
	var out []ConnectResult
	for _, kex := range cfg.ConnectKex {
		cf, err := s.ClientConfig("", kex)
		if err != nil {
			return nil, err
		}
		ms := map[string][]float64{}
		errs := failures[string]{}
		for i := range cfg.ConnectRuns + 2 {
			order := slices.Clone(paths)
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, p := range order {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				d, err := s.Connect(ctx, cf, p)
				if i < 2 {
					continue // warm-up: page cache, the bastion's node host certificate
				}
				if err != nil {
					errs.add(p.Name, err)
					continue
				}
				ms[p.Name] = append(ms[p.Name], float64(d.Microseconds())/1000)
			}
		}
		for _, p := range paths {
			r := ConnectResult{Kex: kex, Path: p.Name, Ms: Summarise(ms[p.Name])}
			errs.into(p.Name, &r.Ms)
			cfg.Logf("connect %s %-11s median %.1f ms p99 %.1f ms errors %d", kex, p.Name, r.Ms.Median, r.Ms.P99, r.Ms.Errors)
			out = append(out, r)
		}
	}
	return out, nil
}

// PerfResult is a CPU profile of the bastion taken with perf during a
// transfer.
type PerfResult struct {
	Path    string
	Cipher  string
	Up      bool
	Seconds float64
	Top     string // perf report, flat, top symbols
	Data    string // the perf.data file
}

// runPerf profiles the bastion with perf while it forwards one transfer
// each way with aes128-gcm and with chacha20-poly1305.
func (s *Stack) runPerf(ctx context.Context, cfg Config) ([]PerfResult, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, fmt.Errorf("perf not found (apt-get install linux-perf): skipped")
	}
	var out []PerfResult
	for _, c := range []string{"aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"} {
		for _, p := range []Path{PathBastion, PathBastionRec} {
			cf, err := s.ClientConfig(c, "")
			if err != nil {
				return nil, err
			}
			data := filepath.Join(s.Dir, fmt.Sprintf("perf-%s-%s.data", p.Name, strings.SplitN(c, "@", 2)[0]))
			rec := exec.Command("perf", "record", "-F", "499", "-g", "-o", data, "-p", fmt.Sprint(s.Bastion.Pid()))
			rec.Stdout, rec.Stderr = nil, nil
			if err := rec.Start(); err != nil {
				return out, err
			}
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			_, terr := s.Transfer(ctx, cf, p, true, cfg.Size)
			d := time.Since(start)
			_ = rec.Process.Signal(syscall.SIGINT)
			_ = rec.Wait()
			if terr != nil {
				return out, terr
			}
			r := PerfResult{Path: p.Name, Cipher: c, Up: true, Seconds: d.Seconds(), Data: data}
			r.Top = perfReport(data, "--no-children", "--sort", "symbol", "-g", "none", "--percent-limit", "1.5")
			out = append(out, r)
			cfg.Logf("perf %s %s: %s", p.Name, c, data)
		}
	}
	return out, nil
}

// startPerf samples pid with perf until the returned func is called,
// which returns the flat profile (empty without perf).
func startPerf(data string, pid int) func() string {
	if _, err := exec.LookPath("perf"); err != nil {
		return func() string { return "" }
	}
	rec := exec.Command("perf", "record", "-F", "499", "-g", "-o", data, "-p", fmt.Sprint(pid))
	if err := rec.Start(); err != nil {
		return func() string { return "" }
	}
	time.Sleep(300 * time.Millisecond)
	return func() string {
		_ = rec.Process.Signal(syscall.SIGINT)
		_ = rec.Wait()
		return perfReport(data, "--no-children", "--sort", "symbol", "-g", "none", "--percent-limit", "1.5")
	}
}

func perfReport(data string, args ...string) string {
	a := append([]string{"report", "-i", data, "--stdio", "--quiet"}, args...)
	b, err := exec.Command("perf", a...).Output()
	if err != nil {
		return "perf report: " + err.Error()
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		l = strings.TrimRight(l, " ")
		l = strings.TrimSuffix(strings.TrimRight(strings.TrimSuffix(l, "-"), " "), "-") // perf's empty srcline columns
		lines = append(lines, strings.TrimRight(l, " "))
		if len(lines) == 30 {
			break
		}
	}
	return strings.Join(lines, "\n")
}
