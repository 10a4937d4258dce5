package client

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ContextName is the kubeconfig context (and cluster and user) name for a
// postern cluster.
func ContextName(cluster string) string { return "postern-" + cluster }

// Kubeconfig returns a kubeconfig with one context for cluster at server
// (whose TLS certificate is caPEM) with token, in namespace (empty: the
// default).
func Kubeconfig(cluster, server string, caPEM []byte, token, namespace string) ([]byte, error) {
	name := ContextName(cluster)
	c := clientcmdapi.NewConfig()
	c.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	c.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	c.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: namespace}
	c.CurrentContext = name
	b, err := clientcmd.Write(*c)
	if err != nil {
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	return b, nil
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
