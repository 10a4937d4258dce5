// Package config loads postern's single TOML configuration file, shared by
// every part of a deployment: [signer], [signer.oidc], [bastion], [storage]
// and the [[role]] list.
//
// # Invariants
//
//   - Unknown keys are errors, never ignored: a typo in a security setting
//     must not silently fall back to a default.
//   - Every problem is reported at once, each naming the file, the line
//     (where it is known) and the key.
//   - Every value has a default set in code (see Default); the zero file is
//     a working development configuration on loopback.
//   - Secrets are never stored in the file itself: only paths to files that
//     hold them (client_secret_file, join_token_file), so the config can be
//     shown, diffed and logged.
//
// Library code never reads flags or the environment; mains pass a path.
package config
