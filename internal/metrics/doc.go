// Package metrics is postern's Prometheus instrumentation and its
// operations HTTP endpoint: /metrics, /healthz and /readyz. It is the only
// package that imports the Prometheus client; the signer and the bastion
// declare their metrics through it and count with the small types it
// returns.
//
// # Security invariants
//
//   - The endpoint serves only metrics and health; it has no
//     authentication, so it listens on its own address (metrics_listen),
//     off by default, never on the API or SSH listener.
//   - Label values come from fixed sets chosen by the callers (modes,
//     results, event names), never from what a client sends, so that no
//     one can grow the series without bound.
//   - Metrics carry counts only: no person, address, token or key.
package metrics
