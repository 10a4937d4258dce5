package client

import (
	"encoding/json"
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
)

// ContextName is the kubeconfig context (and cluster and user) name for a
// postern cluster.
func ContextName(cluster string) string { return "postern-" + cluster }

// Kubeconfig returns a kubeconfig with one context for cluster at server
// (whose TLS certificate is caPEM) with token, in namespace (empty: the
// default). It is JSON, which kubeconfig readers accept (YAML is a
// superset), written without client-go's serializer: kube-exec writes one
// on every run before the command can start.
func Kubeconfig(cluster, server string, caPEM []byte, token, namespace string) ([]byte, error) {
	name := ContextName(cluster)
	type (
		clusterInfo struct {
			Server                   string `json:"server"`
			CertificateAuthorityData []byte `json:"certificate-authority-data"`
		}
		authInfo struct {
			Token string `json:"token"`
		}
		contextInfo struct {
			Cluster   string `json:"cluster"`
			User      string `json:"user"`
			Namespace string `json:"namespace,omitempty"`
		}
		namedCluster struct {
			Name    string      `json:"name"`
			Cluster clusterInfo `json:"cluster"`
		}
		namedUser struct {
			Name string   `json:"name"`
			User authInfo `json:"user"`
		}
		namedContext struct {
			Name    string      `json:"name"`
			Context contextInfo `json:"context"`
		}
	)
	b, err := json.MarshalIndent(struct {
		APIVersion     string         `json:"apiVersion"`
		Kind           string         `json:"kind"`
		Clusters       []namedCluster `json:"clusters"`
		Users          []namedUser    `json:"users"`
		Contexts       []namedContext `json:"contexts"`
		CurrentContext string         `json:"current-context"`
	}{
		APIVersion:     "v1",
		Kind:           "Config",
		Clusters:       []namedCluster{{Name: name, Cluster: clusterInfo{Server: server, CertificateAuthorityData: caPEM}}},
		Users:          []namedUser{{Name: name, User: authInfo{Token: token}}},
		Contexts:       []namedContext{{Name: name, Context: contextInfo{Cluster: name, User: name, Namespace: namespace}}},
		CurrentContext: name,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	return append(b, '\n'), nil
}

// CurrentNamespace returns the namespace of the current context of the
// person's own kubeconfig (KUBECONFIG or ~/.kube/config), or "".
func CurrentNamespace(kubeconfigEnv string) string {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfigEnv != "" {
		rules.Precedence = filepathList(kubeconfigEnv)
	}
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).Namespace()
	if err != nil || ns == "default" {
		return ""
	}
	return ns
}
