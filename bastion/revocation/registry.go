package revocation

import (
	"sync"

	"golang.org/x/crypto/ssh"
)

// Reason is the audit reason (session.end, auth.failed prefix) of
// everything a revocation ends.
const Reason = "revoked"

// Message is what a person whose access was revoked is told, where the
// bastion can tell them (auth banners, stderr of session channels).
const Message = "postern: your access was revoked"

// Entry is one live thing a certificate authorised: an SSH connection, a
// recording relay, a kube channel.
type Entry struct {
	// Cert is the certificate that authenticated it. Required.
	Cert *ssh.Certificate
	// Kind names what it is in logs ("ssh", "recording", "kube").
	Kind string
	// ID identifies it in logs (a conn_id or session_id).
	ID string
	// End is called at most once, on its own goroutine, when the list
	// revokes Cert; cause wraps ErrRevoked and says why. It must make the
	// holder stop promptly (well within a second), tell the person where
	// it can (Message), and write its session.end events with reason
	// Reason. Required.
	End func(cause error)
}

// Ended is an entry a sweep ended.
type Ended struct {
	Entry
	Cause error
}

// Registry holds live entries. The zero value is ready to use.
type Registry struct {
	mu sync.Mutex
	m  map[*registered]struct{}
}

type registered struct {
	e    Entry
	once sync.Once
}

// Add registers e until the returned function is called (call it when the
// holder ends, for any reason). Register before checking the certificate
// against the current list: see the package's invariants.
func (r *Registry) Add(e Entry) (remove func()) {
	reg := &registered{e: e}
	r.mu.Lock()
	if r.m == nil {
		r.m = map[*registered]struct{}{}
	}
	r.m[reg] = struct{}{}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.m, reg)
		r.mu.Unlock()
	}
}

// Len returns the number of live entries.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// Sweep ends every entry whose certificate check refuses, calling its End
// on a goroutine of its own, and returns them. Entries stay registered
// until their holders remove themselves; End runs only once per entry.
func (r *Registry) Sweep(check func(*ssh.Certificate) error) []Ended {
	r.mu.Lock()
	var hit []*registered
	var causes []error
	for reg := range r.m {
		if err := check(reg.e.Cert); err != nil {
			hit = append(hit, reg)
			causes = append(causes, err)
		}
	}
	r.mu.Unlock()
	out := make([]Ended, 0, len(hit))
	for i, reg := range hit {
		cause := causes[i]
		fired := false
		reg.once.Do(func() {
			fired = true
			go reg.e.End(cause)
		})
		if fired {
			out = append(out, Ended{Entry: reg.e, Cause: cause})
		}
	}
	return out
}
