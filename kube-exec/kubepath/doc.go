// Package kubepath tells what a Kubernetes API request does from its
// method, path and query — verb, API group, resource, subresource,
// namespace and name — for audit events, the way the API server's own
// request-info parser does.
//
// # Invariants
//
//   - Parse never fails and never panics: any input gives an [Info]; what
//     is not an API resource path is a non-resource request with the
//     lower-cased method as verb.
//   - Its result is for audit only. Kubernetes RBAC, which parses the
//     request itself, decides what is allowed.
package kubepath
