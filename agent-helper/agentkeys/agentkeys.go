package agentkeys

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/sshcert"
)

// ErrNoAgent means SSH_AUTH_SOCK is unset or unreachable.
var ErrNoAgent = errors.New("no ssh-agent is running (SSH_AUTH_SOCK is not set)")

// Dial connects to the agent at SSH_AUTH_SOCK. Close the returned conn.
func Dial() (agent.ExtendedAgent, net.Conn, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, ErrNoAgent
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to ssh-agent at %s: %w", sock, err)
	}
	return agent.NewClient(conn), conn, nil
}

// Add puts key and cert into the agent with a lifetime of the
// certificate's remaining validity.
func Add(a agent.Agent, key ed25519.PrivateKey, cert *ssh.Certificate, now time.Time) error {
	left := time.Unix(int64(cert.ValidBefore), 0).Sub(now)
	if left <= 0 {
		return errors.New("the certificate is already expired")
	}
	secs := uint32(left / time.Second)
	if secs == 0 {
		secs = 1
	}
	err := a.Add(agent.AddedKey{
		PrivateKey:   key,
		Certificate:  cert,
		Comment:      sshcert.AgentComment(cert.KeyId),
		LifetimeSecs: secs,
	})
	if err != nil {
		return fmt.Errorf("add key to ssh-agent: %w", err)
	}
	return nil
}

// Entry is one postern certificate held by the agent.
type Entry struct {
	Key     *agent.Key
	Cert    *ssh.Certificate
	Comment string
}

// List returns postern's certificates in the agent, newest expiry first.
func List(a agent.Agent) ([]Entry, error) {
	keys, err := a.List()
	if err != nil {
		return nil, fmt.Errorf("list ssh-agent keys: %w", err)
	}
	var out []Entry
	for _, k := range keys {
		if !strings.HasPrefix(k.Comment, sshcert.AgentCommentPrefix) {
			continue
		}
		pub, err := ssh.ParsePublicKey(k.Blob)
		if err != nil {
			continue
		}
		cert, ok := pub.(*ssh.Certificate)
		if !ok {
			continue
		}
		out = append(out, Entry{Key: k, Cert: cert, Comment: k.Comment})
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Cert.ValidBefore > out[j-1].Cert.ValidBefore; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// RemoveAll takes every postern key (certificate and plain key with the
// postern comment) out of the agent and returns how many it removed.
func RemoveAll(a agent.Agent) (int, error) {
	keys, err := a.List()
	if err != nil {
		return 0, fmt.Errorf("list ssh-agent keys: %w", err)
	}
	n := 0
	for _, k := range keys {
		if !strings.HasPrefix(k.Comment, sshcert.AgentCommentPrefix) {
			continue
		}
		if err := a.Remove(k); err != nil {
			return n, fmt.Errorf("remove %s from ssh-agent: %w", k.Comment, err)
		}
		n++
	}
	return n, nil
}
