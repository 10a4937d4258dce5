package server

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/internal/config"
)

// policyBox holds what the roles and the inventory decide, in force;
// Reload swaps it whole, so a decision is made under one configuration,
// old or new, never a mix. Open sessions keep running: the policy decides
// hops, kube channels and recording when they open.
type policyBox struct {
	cur atomic.Pointer[policyState]
	// resolver and localAddrs are the test overrides (Options), applied
	// to every policy loaded.
	opts Options
}

// policyState is one loaded configuration's roles and inventory.
type policyState struct {
	*authz.Policy
	// cfg answers kube access (KubeAccessFor) from these roles.
	cfg *config.Config
	// roles and nodes hold the recording settings ([[role]] recording,
	// record_input; [[bastion.node]] recording).
	roles map[string]config.Role
	nodes map[string]string
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

func (b *policyBox) build(cfg *config.Config) (*policyState, error) {
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
	st := &policyState{Policy: p, cfg: cfg, roles: map[string]config.Role{}, nodes: map[string]string{}}
	for _, role := range cfg.Roles {
		st.roles[role.Name] = role
	}
	for _, n := range cfg.Bastion.Nodes {
		st.nodes[n.Name] = n.Recording
	}
	return st, nil
}

// state is the configuration in force.
func (b *policyBox) state() *policyState { return b.cur.Load() }

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
// What is reloaded: roles (their node rules, kube_clusters, kube_users,
// kube_groups, recording and record_input; logins are checked by the
// nodes) and the [[bastion.node]] inventory (addresses, labels,
// recording). What is not: listeners, keys and certificates, the user CA,
// revocation, storage, [kube] and the signer settings (those need a
// restart).
func (s *Server) Reload(cfg *config.Config) error {
	p, err := s.policy.build(cfg)
	if err != nil {
		return fmt.Errorf("reload roles and node rules: %w", err)
	}
	s.policy.cur.Store(p)
	s.log.Info("reloaded roles, node rules, kube access and recording settings", "roles", len(cfg.Roles), "nodes", len(cfg.Bastion.Nodes))
	return nil
}
