// Package api holds the JSON wire types of the signer's HTTP API, shared by
// the signer and its clients (the postern CLI, the bastion), so clients
// never import signer code.
//
// # Invariants
//
//   - Nothing in a response is secret except PollToken, which is returned
//     once, to the client that started the login, and is required to collect
//     its certificate.
package api
