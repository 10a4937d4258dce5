package server

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/internal/config"
)

// policyBox holds the authorisation policy in force; Reload swaps it
// whole, so a decision is made under one policy, old or new, never a mix.
// Open sessions keep running: a policy decides hops when they open.
type policyBox struct {
	cur atomic.Pointer[authz.Policy]
	// resolver and localAddrs are the test overrides (Options), applied
	// to every policy loaded.
	opts Options
}

func newPolicyBox(cfg *config.Config, opts Options) (*policyBox, error) {
	b := &policyBox{opts: opts}
	p, err := b.build(cfg)
	if err != nil {
		return nil, err
	}
	b.cur.Store(p)
	return b, nil
}

func (b *policyBox) build(cfg *config.Config) (*authz.Policy, error) {
	p, err := authz.New(cfg)
	if err != nil {
		return nil, err
	}
	if b.opts.Resolver != nil {
		p.Resolver = b.opts.Resolver
	}
	if b.opts.LocalAddrs != nil {
		p.LocalAddrs = b.opts.LocalAddrs
	}
	return p, nil
}

func (b *policyBox) Decide(ctx context.Context, roles []string, host string, port uint32) (authz.Decision, error) {
	return b.cur.Load().Decide(ctx, roles, host, port)
}

func (b *policyBox) Rules(roles []string) ([]authz.Rule, []string) {
	return b.cur.Load().Rules(roles)
}

func (b *policyBox) Reachable(roles []string) []authz.Reach {
	return b.cur.Load().Reachable(roles)
}

// Reload applies the roles and node rules of a newly loaded
// configuration (SIGHUP): it builds the new authorisation policy and, only
// if that succeeds, swaps it in. On error the policy in force is kept.
//
// What is reloaded: roles (their node rules, logins are checked by the
// nodes) and the [[bastion.node]] inventory, for authorisation. What is
// not: listeners, keys and certificates, the user CA, revocation, storage,
// Kubernetes, and the recording mode's per-role and per-node settings
// (those need a restart).
func (s *Server) Reload(cfg *config.Config) error {
	p, err := s.policy.build(cfg)
	if err != nil {
		return fmt.Errorf("reload roles and node rules: %w", err)
	}
	s.policy.cur.Store(p)
	s.log.Info("reloaded roles and node rules", "roles", len(cfg.Roles), "nodes", len(cfg.Bastion.Nodes))
	return nil
}
