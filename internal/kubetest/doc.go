// Package kubetest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver with RBAC and client-certificate authentication, and the
// kubectl of the same release.
//
// [Start] starts etcd on loopback ports with a data directory in
// t.TempDir(), then kube-apiserver on a loopback port, waits for /readyz
// and writes an admin kubeconfig (an identity in system:masters). Both are
// stopped when the test ends; their output is shown only if it failed.
// [Run] does the same outside a test (make bench), with the files and
// logs in a directory the caller names, until [Cluster.Stop].
// [Cluster.UserKubeconfig] mints a client certificate for any user name and
// groups, e.g. for a forwarder whose only right is to impersonate.
//
// There is no controller manager, scheduler or real kubelet: RBAC, admission
// and storage are real, but pods stay Pending, deleted namespaces stay
// Terminating, and namespaces get no "default" service account (the
// ServiceAccount admission plugin is disabled so pods can be created).
//
// # Nodes: exec, attach and port-forward
//
// [Cluster.StartNode] starts a testkubelet (build/cmd/testkubelet) and
// registers it as a Node; [Node.RunPod] creates a pod bound to it and
// marks it Running. The API server then sends the pod's exec, attach and
// port-forward to the testkubelet exactly as to a kubelet: over HTTPS with
// its kubelet client certificate (--kubelet-client-certificate), checking
// the testkubelet's serving certificate (--kubelet-certificate-authority),
// translating a client's WebSocket to SPDY on the way. The testkubelet
// serves them with Kubernetes' own streaming server code
// (k8s.io/cri-streaming, what a kubelet's container runtime uses), so
// SPDY, WebSocket, TTY resizing and exit codes are the real protocol. Only
// the container runtime is a stand-in: an exec runs the command on the
// host as the test's user (with POD_NAMESPACE, POD_NAME and
// CONTAINER_NAME set), an attach starts `cat`, and a port-forward
// connects to the port on 127.0.0.1 ([NodeIP]; [EchoServer] is a pod
// port to forward to). The testkubelet serves nobody but the API server's
// kubelet client certificate.
//
// # Binaries
//
// The binaries are built from the Go module proxy by the separate module in
// build/ (go.mod pins k8s.io/kubernetes [Version] and replaces every k8s.io
// staging module with its published tag; testkubelet is that module's own
// command, linked in seconds from the same packages). build/build.sh
// compiles them once into
// ${POSTERN_CACHE:-${XDG_CACHE_HOME:-~/.cache}/postern}/kube-VERSION/bin
// and does nothing while a stamp there matches. `make kube-bins` runs it;
// so does the first [Start] of a test process, which may then take 10 to
// 15 minutes (longer than go test's default -timeout of 10m).
// POSTERN_KUBE_BIN_DIR may name a directory holding prebuilt
// kube-apiserver, etcd, kubectl and testkubelet instead.
//
// # CI policy
//
// When the binaries cannot be had (no Go toolchain, no module proxy, a
// failed build) the test is skipped with a hint, or failed when
// testenv.Strict (CI=true or POSTERN_REQUIRE_E2E=1). Like internal/testenv,
// this is a test helper and may read those environment variables.
//
// # Security
//
// The cluster is for tests only: etcd speaks plain HTTP on loopback, and
// the CA key lives in memory for the test's duration so that tests can
// mint identities. Anonymous requests are refused (--anonymous-auth=false)
// and no front-proxy (X-Remote-User) authentication is configured, so the
// only ways in are a certificate from this CA and impersonation that RBAC
// allows.
package kubetest
