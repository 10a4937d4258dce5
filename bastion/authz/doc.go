// Package authz decides whether a person may open a hop from the bastion to
// a node: it parses the target of a direct-tcpip request, matches it against
// the node rules of the person's roles, resolves the name and checks every
// resolved address against the address policy.
//
// # Node rules
//
// A role's nodes list holds rules parsed by config.ParseNodeRule:
//
//   - a glob ("*.prod.internal", "node?") matches the name the client asked
//     for, or the name of the inventory node it asked for by address;
//   - a label rule ("label:env=prod") matches inventory nodes carrying the
//     label;
//   - a prefix rule ("10.20.0.0/16", "10.0.0.5", "[fd00::/64]") matches
//     every resolved address on its own, whatever name was asked for;
//   - each rule allows port 22 unless it names ports (":2222", ":8000-8999").
//
// Roles named in the certificate but missing from the bastion's
// configuration grant nothing.
//
// # Security invariants
//
//   - Every resolved address is checked, and all of them must pass; the
//     bastion dials only addresses from the checked list (never the name
//     again), so DNS rebinding between check and dial is impossible.
//   - Special addresses — unspecified, loopback, link-local, multicast,
//     cloud metadata endpoints, NAT64 and IPv4-compatible forms of those, and
//     every address of the bastion's own interfaces — are refused unless a
//     prefix rule that lies entirely inside the special range names them
//     (e.g. "127.0.0.1:2201" or "127.0.0.0/8", never "0.0.0.0/0" and never a
//     glob). Unspecified, multicast and IPv4-compatible addresses are always
//     refused.
//   - Nothing is resolved for a person none of whose rules could match the
//     port asked for, so DNS cannot be used as an oracle.
//   - The reason shown to the client (Denial.UserMessage) is short and names
//     only the target; the detail (which rule, which address, which class)
//     goes to the audit log only.
package authz
