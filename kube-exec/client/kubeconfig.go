package client

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
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
// person's own kubeconfig (the files in kubeconfigEnv, as KUBECONFIG lists
// them, or ~/.kube/config), or "" for the default namespace or when there
// is none.
//
// It follows kubectl's merge rules for what it reads: the first file that
// sets current-context wins, and so does the first file that defines a
// context of that name. Files that are missing or unreadable are skipped,
// as kubectl skips missing ones. It reads the files itself rather than
// through client-go, whose loading costs every kube-exec run a few
// milliseconds of start-up.
func CurrentNamespace(kubeconfigEnv string) string {
	var files []string
	if kubeconfigEnv != "" {
		files = filepathList(kubeconfigEnv)
	} else if home, err := os.UserHomeDir(); err == nil {
		files = []string{filepath.Join(home, ".kube", "config")}
	}
	var configs []kubeconfigContexts
	current := ""
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var c kubeconfigContexts
		if err := yaml.Unmarshal(b, &c); err != nil {
			continue
		}
		if current == "" {
			current = c.CurrentContext
		}
		configs = append(configs, c)
	}
	if current == "" {
		return ""
	}
	for _, c := range configs {
		for _, nc := range c.Contexts {
			if nc.Name != current {
				continue
			}
			if nc.Context.Namespace == "default" {
				return ""
			}
			return nc.Context.Namespace
		}
	}
	return ""
}

// kubeconfigContexts is the part of a kubeconfig CurrentNamespace reads.
type kubeconfigContexts struct {
	CurrentContext string `json:"current-context"`
	Contexts       []struct {
		Name    string `json:"name"`
		Context struct {
			Namespace string `json:"namespace"`
		} `json:"context"`
	} `json:"contexts"`
}
