// Package forwarder is the in-VPC half of postern's Kubernetes access: it
// dials out to every bastion over SSH with its host certificate, keeps the
// tunnels up, and serves each channel a bastion opens as HTTP, proxied to
// the cluster's API server with the forwarder's own credential and the
// person's identity as impersonation headers.
//
// # Security invariants
//
//   - Who the request is for comes only from the [kubeproto.Identity] the
//     bastion sent with the channel, never from the request: the client's
//     Authorization header, every Impersonate-* header and the front-proxy
//     X-Remote-* headers are removed before Impersonate-User and
//     Impersonate-Group are set. The one choice a client has is which of
//     the Identity's Users to act as (kubectl --as), among those only.
//   - The forwarder's credential should grant nothing but impersonate:
//     Kubernetes RBAC then judges every request as the person.
//   - Bastions are authenticated by their host certificate from the host
//     CA (principal = the host name dialled); the forwarder accepts only
//     [kubeproto.ChannelType] channels and no other requests.
//   - Every request is one kube.request audit event, written when the
//     request ends (a watch or an upgraded stream at its end).
//   - Metrics (kube.forwarder.metrics_listen) carry counts only. Their
//     labels come from the configuration (the bastions' addresses) or
//     fixed sets (HTTP code, a known verb or "other"), never from a
//     person, a path or a header, so a client cannot add series.
package forwarder
