package bench

import (
	_ "embed"
	"fmt"
	"strings"
	"time"

	"github.com/postern-dev/postern/internal/api"
)

// notes is the hand-written part of the report: method, noise, what
// limits each figure, profiling findings. Keep it true when figures move.
//
//go:embed notes.md
var notes string

// Report is everything one run measured.
type Report struct {
	Started, Finished time.Time
	Command           string
	Config            Config `json:"-"`
	Machine           Machine
	Throughput        []ThroughputResult
	Connect           []ConnectResult
	Handshake         []HandshakeResult
	Idle              []IdleResult
	Burst             []BurstResult
	Signer            []SignerResult
	Keystroke         []KeystrokeResult
	GoBench           GoBench
	Perf              []PerfResult
	Kube              *KubeResult `json:",omitempty"`
	Failures          []string
	PhaseTimes        []PhaseTime
}

// PhaseTime is how long a phase took.
type PhaseTime struct{ Phase, Took string }

func (r *Report) tp(cipher string, up bool, path string) *ThroughputResult {
	for i := range r.Throughput {
		t := &r.Throughput[i]
		if t.Cipher == cipher && t.Up == up && t.Path == path {
			return t
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

// Target is one of issue 7's targets with its verdict.
type Target struct {
	What     string
	Want     string
	Measured string
	Verdict  string // met, missed, not measured
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// Targets evaluates issue 7's targets against the figures.
func (r *Report) Targets() []Target {
	var ts []Target
	if len(r.Throughput) > 0 {
		for _, c := range r.Config.Ciphers {
			for _, up := range []bool{true, false} {
				j, b, rec := r.tp(c, up, "sshd-jump"), r.tp(c, up, "bastion"), r.tp(c, up, "bastion-rec")
				if j == nil || b == nil || j.MiBps.N == 0 || b.MiBps.N == 0 {
					continue
				}
				q := ratio(b.MiBps.Median, j.MiBps.Median)
				ts = append(ts, Target{
					What: fmt.Sprintf("forward throughput, %s, %s", cipherName(c), dirName(up)), Want: "≥ 1.0× sshd jump",
					Measured: fmt.Sprintf("%.2f× (%s vs %s MiB/s)", q, f1(b.MiBps.Median), f1(j.MiBps.Median)), Verdict: verdict(q >= 1.0),
				})
				qc := ratio(b.CPUPerGiB.Median, j.CPUPerGiB.Median)
				ts = append(ts, Target{
					What: fmt.Sprintf("forward CPU per GiB, %s, %s", cipherName(c), dirName(up)), Want: "≤ 1.0× sshd jump",
					Measured: fmt.Sprintf("%.2f× (%s vs %s CPU s/GiB)", qc, f2(b.CPUPerGiB.Median), f2(j.CPUPerGiB.Median)), Verdict: verdict(qc <= 1.0),
				})
				if rec != nil && rec.MiBps.N > 0 {
					qr := ratio(rec.MiBps.Median, j.MiBps.Median)
					ts = append(ts, Target{
						What: fmt.Sprintf("recording throughput, %s, %s", cipherName(c), dirName(up)), Want: "≥ 0.6× sshd jump",
						Measured: fmt.Sprintf("%.2f× (%s vs %s MiB/s)", qr, f1(rec.MiBps.Median), f1(j.MiBps.Median)), Verdict: verdict(qr >= 0.6),
					})
				}
			}
		}
	}
	for _, kex := range r.Config.ConnectKex {
		var j, b *ConnectResult
		for i := range r.Connect {
			c := &r.Connect[i]
			if c.Kex == kex && c.Path == "sshd-jump" {
				j = c
			}
			if c.Kex == kex && c.Path == "bastion" {
				b = c
			}
		}
		if j == nil || b == nil || j.Ms.N == 0 || b.Ms.N == 0 {
			continue
		}
		q := ratio(b.Ms.Median, j.Ms.Median)
		ts = append(ts, Target{
			What: "connection setup `ssh -J … true`, " + kex, Want: "≤ 0.7× sshd jump (median)",
			Measured: fmt.Sprintf("%.2f× (%s vs %s ms; p99 %s vs %s ms)", q, f1(b.Ms.Median), f1(j.Ms.Median), f1(b.Ms.P99), f1(j.Ms.P99)), Verdict: verdict(q <= 0.7),
		})
	}
	ts = append(ts, Target{What: "offer mlkem768x25519-sha256", Want: "offered; measured with OpenSSH 10",
		Measured: "offered (x/crypto); OpenSSH 9.2 here cannot negotiate it, so only the Go client measures it (below)", Verdict: "met (offered); not measured with ssh"})
	for _, b := range r.Burst {
		if b.Jump == JumpBastion && b.N >= 1000 {
			ts = append(ts, Target{What: fmt.Sprintf("burst of %d simultaneous connections", b.N), Want: "0 dropped",
				Measured: fmt.Sprintf("%d dropped (sshd jump: %s)", b.Dropped, r.burstOf(JumpSSHD, b.N)), Verdict: verdict(b.Dropped == 0)})
		}
	}
	maxIdle := 0
	for _, i := range r.Idle {
		if i.Jump == JumpBastion && i.Opened > 0 {
			maxIdle = max(maxIdle, i.N)
			ts = append(ts, Target{What: fmt.Sprintf("bastion memory per idle session (N=%d)", i.N), Want: "≤ 100 KiB",
				Measured: fmt.Sprintf("%.1f KiB RSS (%.1f KiB PSS); errors %d", i.RSSPerSession(), i.PSSPerSession(), i.Errors), Verdict: verdict(i.RSSPerSession() <= 100)})
		}
	}
	if len(r.Idle) > 0 {
		ts = append(ts, r.idle10k(maxIdle))
	}
	for _, s := range r.Signer {
		if s.Endpoint == api.PathDelegate {
			ts = append(ts, Target{What: fmt.Sprintf("signer certificates/s over HTTPS (delegated, %d clients)", s.Clients), Want: "≥ 5,000/s",
				Measured: fmt.Sprintf("%.0f/s (p50 %s ms, p99 %s ms, %d errors)", s.PerSec, f1(s.Ms.Median), f1(s.Ms.P99), s.Errors), Verdict: verdict(s.PerSec >= 5000)})
		}
	}
	ts = append(ts, r.kubeTargets()...)
	return ts
}

func (r *Report) burstOf(jump string, n int) string {
	for _, b := range r.Burst {
		if b.Jump == jump && b.N == n {
			return fmt.Sprintf("%d of %d dropped", b.Dropped, n)
		}
	}
	return "not run"
}

// Markdown renders the report for docs/benchmarks.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	c := r.Config
	p("# Benchmarks: postern against stock OpenSSH\n\n")
	p("Generated by `make bench` (internal/bench, cmd/postern-bench) on %s; the run took %s.\n",
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Finished.Sub(r.Started).Round(time.Second))
	p("Nothing here is a pass/fail test. How to read it and what limits each figure: see the notes at the end.\n\n")
	p("## Machine\n\n| | |\n|---|---|\n")
	m := r.Machine
	p("| CPUs (nproc) | %d |\n| CPU | %s |\n| memory | %.1f GiB |\n| kernel | %s |\n| OpenSSH | %s |\n| Go | %s |\n| load average at start | %s |\n| postern revision | %s (untracked bench files aside, \"-dirty\" means local changes) |\n\n",
		m.CPUs, m.CPU, m.MemGiB, m.Kernel, m.OpenSSH, m.Go, m.Load, m.Revision)
	p("## Command\n\n```sh\n%s\n```\n\n", r.Command)
	p("Stack: a stock sshd node in a network namespace (veth, %s), a stock sshd jump host on loopback (`AllowTcpForwarding yes`, stock `MaxStartups 10:30:100`, trusting the user CA), one postern-bastion on loopback with two inventory names for the same node: `%s` (forward mode) and `%s` (recording mode), and postern-signer for the bastion's host certificates and the delegated certificates of recording mode. The client is the real `ssh` with `-F` files (`IdentitiesOnly`, no agent, `@cert-authority` known_hosts); the login user `%s` has `/bin/sh` and no rc files. \"direct\" is `ssh` straight to the node, the ceiling.\n\n", NodeIP, NodeFwd, NodeRec, LoginUser)
	if len(r.Failures) > 0 {
		p("**Phases that failed:**\n\n")
		for _, f := range r.Failures {
			p("- %s\n", f)
		}
		p("\n")
	}
	if ts := r.Targets(); len(ts) > 0 {
		p("## Targets (issue 7; Kubernetes: issue 5)\n\n| target | wanted | measured | verdict |\n|---|---|---|---|\n")
		for _, t := range ts {
			p("| %s | %s | %s | %s |\n", t.What, t.Want, t.Measured, t.Verdict)
		}
		p("\n")
	}
	if len(r.Throughput) > 0 {
		p("## 1. Bulk throughput\n\n%d MiB per transfer, %d interleaved rounds (the path order is reversed every other round). Up: `head -c N /dev/zero | ssh -F cfg -J JUMP node 'wc -c'`; down: `ssh -F cfg -J JUMP node 'head -c N /dev/zero' | wc -c` (the byte count is checked, so a cut transfer is an error, not a fast one). The default cipher of OpenSSH 9.2 is chacha20-poly1305@openssh.com, with sshd and with the bastion alike. CPU: seconds of the jump host per GiB, from a CPU-accounting cgroup holding the jump host and everything it forks (cgroup v2 cpu.stat, or v1 cpuacct.usage), so that sshd's per-connection processes count too; /proc/PID/stat only where no cgroup is writable. MiB/s: median [p10–p90] (min–max); with 3 rounds p10–p90 is min–max.\n\n", c.Size>>20, c.Rounds)
		p("| cipher | dir | path | MiB/s median [p10–p90] (min–max) | × sshd jump | jump CPU s/GiB median [p10–p90] | × sshd jump | errors |\n|---|---|---|---|---|---|---|---|\n")
		for _, t := range r.Throughput {
			j := r.tp(t.Cipher, t.Up, "sshd-jump")
			cpu, cq := "—", "—"
			if t.CPUPerGiB.N > 0 {
				cpu = fmt.Sprintf("%s [%s–%s]", f2(t.CPUPerGiB.Median), f2(t.CPUPerGiB.P10), f2(t.CPUPerGiB.P90))
				cq = f2(ratio(t.CPUPerGiB.Median, j.CPUPerGiB.Median))
			}
			p("| %s | %s | %s | %s [%s–%s] (%s–%s) | %s | %s | %s | %d |\n", cipherName(t.Cipher), dirName(t.Up), t.Path,
				f1(t.MiBps.Median), f1(t.MiBps.P10), f1(t.MiBps.P90), f1(t.MiBps.Min), f1(t.MiBps.Max), f2(ratio(t.MiBps.Median, j.MiBps.Median)), cpu, cq, t.MiBps.Errors)
		}
		p("\n")
	}
	if len(r.Connect) > 0 {
		p("## 2. Connection setup\n\n`ssh -F cfg -J JUMP node true`, %d runs per path after 2 warm-up runs, paths interleaved; the key exchange is forced in the client's config, so both hops (client–jump and client–node) use it. Milliseconds.\n\n", c.ConnectRuns)
		p("| kex | path | median | p10 | p90 | p99 | min | max | × sshd jump | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, x := range r.Connect {
			var j ConnectResult
			for _, y := range r.Connect {
				if y.Kex == x.Kex && y.Path == "sshd-jump" {
					j = y
				}
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", x.Kex, x.Path, f1(x.Ms.Median), f1(x.Ms.P10), f1(x.Ms.P90), f1(x.Ms.P99), f1(x.Ms.Min), f1(x.Ms.Max), f2(ratio(x.Ms.Median, j.Ms.Median)), x.Ms.Errors)
		}
		p("\nOpenSSH 9.2 (the client and sshd here) has no mlkem768x25519-sha256 (added in 9.9, default in 10.0), so `ssh -J` cannot measure it. The Go client (x/crypto) below can, against the bastion only.\n\n")
	}
	if len(r.Handshake) > 0 {
		p("### Connection setup with a Go client (one hop)\n\nx/crypto/ssh client in this process: TCP connect, key exchange, certificate authentication and one forwarded channel to a sink on the node, against the jump host alone (no inner SSH to the node). %d runs each, interleaved. Milliseconds.\n\n", 2*c.ConnectRuns)
		p("| jump | kex | median | p10 | p90 | p99 | errors |\n|---|---|---|---|---|---|---|\n")
		for _, h := range r.Handshake {
			p("| %s | %s | %s | %s | %s | %s | %d |\n", h.Jump, h.Kex, f2(h.Ms.Median), f2(h.Ms.P10), f2(h.Ms.P90), f2(h.Ms.P99), h.Ms.Errors)
		}
		p("\n")
	}
	if len(r.Burst) > 0 {
		p("## 3a. Burst of simultaneous connections\n\nN Go-client connections started at the same instant against each jump host; each authenticates, opens a forwarded channel to the sink and holds it until the whole burst is done. A connection that fails (reset, closed before the banner, timeout) counts as dropped. sshd runs with its stock `MaxStartups 10:30:100`.\n\n")
		p("| jump | N | ok | dropped | seconds | first error |\n|---|---|---|---|---|---|\n")
		for _, x := range r.Burst {
			p("| %s | %d | %d | %d | %s | %s |\n", x.Jump, x.N, x.OK, x.Dropped, f1(x.Secs), x.First)
		}
		p("\n")
	}
	if len(r.Idle) > 0 {
		p("## 3b. Idle sessions\n\nN sessions held open at once: each is one SSH connection to the jump host with one forwarded channel to a sink on the node (a TCP server in the node's namespace that only reads), opened 8 at a time with the Go client (below sshd's MaxStartups). Memory is the growth of the jump host's process tree (sshd: the listener and every per-connection process) between before and with the sessions held, divided by N; PSS splits shared pages fairly between sshd's processes. \"With the sessions held\" is read once it settles (2 s after the last session opened, then until two readings 1 s apart agree within 1 %%, at most 10 s; the seconds waited are in the note). Idle CPU over 5 s after that.\n\n")
		p("| jump | N | opened | errors | RSS/session KiB | PSS/session KiB | processes | idle CPU %% of a core | seconds to open | note |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, x := range r.Idle {
			if x.Skipped != "" {
				p("| %s | %d | — | — | — | — | — | — | — | %s |\n", x.Jump, x.N, x.Skipped)
				continue
			}
			note := x.First
			if x.SettleSecs > 0 {
				note = strings.TrimPrefix(note+fmt.Sprintf("; memory read after %.0f s", x.SettleSecs), "; ")
			}
			p("| %s | %d | %d | %d | %s | %s | %d | %s | %s | %s |\n", x.Jump, x.N, x.Opened, x.Errors, f1(x.RSSPerSession()), f1(x.PSSPerSession()), x.Procs, f2(x.CPUIdle), f1(x.OpenSecs), note)
		}
		p("\n")
	}
	if len(r.Signer) > 0 || len(r.GoBench.Lines) > 0 {
		p("## 4. Signer\n\nMany HTTPS clients in parallel (keep-alive, TLS 1.3, pinned to the signer's certificate) against the two issuance paths that need no login: `%s` (what a recording bastion asks on every recorded hop: bastion-signed request, the person's certificate checked against the CA and the KRL, a certificate signed, an audit event written) and `%s` (a host certificate for a join token). Request bodies are prepared (and bastion-signed) before the clock starts; the load generator still shares the 2 cores with the signer — its CPU per 1,000 certificates is shown.\n\n", api.PathDelegate, api.PathHostCert)
		p("| endpoint | clients | issued | certs/s | p50 ms | p99 ms | errors | signer CPU s/1k certs | client CPU s/1k |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Signer {
			p("| `%s` | %d | %d | %.0f | %s | %s | %d | %s | %s |\n", s.Endpoint, s.Clients, s.Issued, s.PerSec, f2(s.Ms.Median), f2(s.Ms.P99), s.Errors, f2(s.SignerCPUPerK), f2(s.ClientCPUPerK))
		}
		for _, s := range r.Signer {
			if s.Profile != "" {
				p("\nSigner profile (`perf record -g -p SIGNER` during an extra %s run with %d clients, whose figures are not in the table: perf takes CPU from the same cores), self time by symbol:\n\n```\n%s\n```\n", s.Endpoint, s.Clients, s.Profile)
			}
		}
		for _, s := range r.Signer {
			if s.First != "" {
				p("\nFirst error (%s, %d clients): `%s`\n", s.Endpoint, s.Clients, s.First)
			}
		}
		if len(r.GoBench.Lines) > 0 {
			p("\nCeilings, Go benchmarks (`%s`):\n\n```\n%s\n```\n", r.GoBench.Command, strings.Join(r.GoBench.Lines, "\n"))
			if r.GoBench.Error != "" {
				p("\n(go test: %s)\n", r.GoBench.Error)
			}
		}
		p("\n")
	}
	p("%s", r.keystrokeMarkdown())
	r.kubeMarkdown(p)
	if len(r.Perf) > 0 {
		p("## Profile of the bastion\n\n`perf record -F 499 -g -p BASTION` during one upload of %d MiB; self time by symbol (top entries):\n\n", c.Size>>20)
		for _, x := range r.Perf {
			p("### %s, %s, up (%.1f s)\n\n```\n%s\n```\n\n", x.Path, x.Cipher, x.Seconds, x.Top)
		}
	}
	p("## Notes\n\n%s\n", strings.TrimSpace(notes))
	if len(r.PhaseTimes) > 0 {
		p("## Phase times\n\n")
		for _, t := range r.PhaseTimes {
			p("- %s: %s\n", t.Phase, t.Took)
		}
		p("\n")
	}
	return b.String()
}
