package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"
)

// Agent is a real ssh-agent (ssh-agent -D -a Socket), stopped at cleanup.
type Agent struct {
	// Socket is the absolute path of the agent's unix socket.
	Socket string
}

// StartAgent starts ssh-agent on a fresh socket and waits until it accepts.
// The socket lives in a short temporary directory (unix socket paths are
// limited to about 100 bytes, which t.TempDir can exceed).
func StartAgent(t testing.TB) *Agent {
	t.Helper()
	bin := RequireBinary(t, "ssh-agent")
	dir, err := os.MkdirTemp("", "pe2e-agent-")
	if err != nil {
		t.Fatalf("testenv: create agent dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &Agent{Socket: filepath.Join(dir, "agent.sock")}

	logs := NewLogs(t, "ssh-agent")
	cmd := exec.Command(bin, "-D", "-a", a.Socket)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start ssh-agent: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { stopProcess(cmd, done) })

	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", a.Socket)
		if err == nil {
			c.Close()
			return a
		}
		select {
		case <-done:
			t.Fatalf("testenv: ssh-agent exited early:\n%s", logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: ssh-agent socket %s not ready: %v", a.Socket, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Env returns the environment entry pointing ssh at this agent.
func (a *Agent) Env() []string {
	return []string{"SSH_AUTH_SOCK=" + a.Socket}
}

// Client connects to the agent; the connection is closed at cleanup.
func (a *Agent) Client(t testing.TB) agent.ExtendedAgent {
	t.Helper()
	c, err := net.Dial("unix", a.Socket)
	if err != nil {
		t.Fatalf("testenv: dial agent: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return agent.NewClient(c)
}
