// Package client is the person's side of postern's Kubernetes access:
// one SSH connection to the bastion authenticated with the postern
// certificate in ssh-agent, a loopback HTTP endpoint guarded by a bearer
// token, and a kubeconfig pointing kubectl (or any client) at it.
//
// # Security invariants
//
//   - The loopback endpoint answers only requests carrying its token
//     (compared in constant time); the token is random per run (kube-exec)
//     or kept 0600 in the postern directory (kube-exec proxy), and it
//     never leaves the machine: it is removed before a request goes to
//     the bastion. The endpoint's TLS key is made once and kept 0600 in
//     the postern directory (kube-exec-loopback.pem, kube-proxy.key); the
//     token, not the certificate, is what keeps other local users out.
//   - The bastion is authenticated by its host certificate through the
//     known_hosts file `postern config` wrote (@cert-authority lines).
//   - Nothing here is trusted for authorization: the bastion decides who
//     may reach a cluster, the forwarder whom requests act for, and
//     Kubernetes RBAC what they may do.
package client
