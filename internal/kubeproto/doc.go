// Package kubeproto is the small wire contract between the three parts of
// postern's Kubernetes access: kube-exec on the person's machine, the
// bastion, and the forwarder inside the cluster's network.
//
//   - kube-exec opens a [ClientChannelType] channel to the bastion naming
//     the cluster in its [ClientOpen] (or, with bastions that predate it,
//     a "session" channel asking for the subsystem
//     [SubsystemPrefix]+CLUSTER); the channel then carries plain HTTP/1.1
//     to the cluster's API server (through the forwarder).
//   - A forwarder authenticates to the bastion with a host certificate
//     whose principal is [ForwarderPrincipal](CLUSTER), then announces
//     itself with the global request [RegisterRequest].
//   - For every allowed channel the bastion opens a [ChannelType]
//     channel on the forwarder's connection; its extra data is an
//     [Identity] (JSON) saying for whom the forwarder acts.
//   - When the KRL revokes the person's certificate, the bastion sends
//     [RevokedRequest] on the person's connection, then closes it.
//
// # Security invariants
//
//   - Cluster names are short DNS-label-like strings ([ValidCluster]); a
//     name that is not valid is refused before any lookup, so it can never
//     smuggle a path, a comma or a slash into a principal or a log line.
//   - The forwarder principal contains a slash, which no DNS host name
//     does: a node's host certificate can never pass for a forwarder.
//   - The Identity is written by the bastion only, from the verified
//     certificate and its own role configuration; nothing the client sends
//     ends up in it.
package kubeproto
