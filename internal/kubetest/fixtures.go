package kubetest

// TeamRBAC is the cluster-side setup the tests share and
// docs/kubernetes.md describes: namespace team-a where group team-a-devs
// may work with pods and configmaps and exec, attach and port-forward into
// pods, group team-a-viewers may only read pods, and a forwarder identity
// ("postern-forwarder", see UserKubeconfig) whose only right is to
// impersonate users, groups and service accounts.
const TeamRBAC = `
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: dev
  namespace: team-a
rules:
- apiGroups: [""]
  resources: [pods, configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
# exec, attach and port-forward: create (SPDY is a POST), and get for
# WebSocket (a GET, which the API server also checks against create)
- apiGroups: [""]
  resources: [pods/exec, pods/attach, pods/portforward]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: team-a-devs
  namespace: team-a
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: team-a-devs
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: dev
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: viewer
  namespace: team-a
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: team-a-viewers
  namespace: team-a
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: team-a-viewers
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: viewer
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: postern-forwarder
rules:
- apiGroups: [""]
  resources: [users, groups, serviceaccounts]
  verbs: [impersonate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: postern-forwarder
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: postern-forwarder
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: postern-forwarder
`
