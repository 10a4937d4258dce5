package kubepath

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, method, path, query string
		want                      Info
	}{
		{name: "list pods", method: "GET", path: "/api/v1/namespaces/team-a/pods", query: "limit=500",
			want: Info{Verb: "list", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "pods"}},
		{name: "watch pods", method: "GET", path: "/api/v1/namespaces/team-a/pods", query: "watch=true&resourceVersion=1",
			want: Info{Verb: "watch", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "pods"}},
		{name: "watch one by field selector", method: "GET", path: "/api/v1/namespaces/team-a/pods", query: "fieldSelector=metadata.name%3Dweb&watch=1",
			want: Info{Verb: "watch", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "pods", Name: "web"}},
		{name: "legacy watch", method: "GET", path: "/api/v1/watch/namespaces/team-a/pods/web",
			want: Info{Verb: "watch", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "pods", Name: "web"}},
		{name: "get pod", method: "GET", path: "/api/v1/namespaces/team-a/pods/web",
			want: Info{Verb: "get", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "pods", Name: "web"}},
		{name: "exec", method: "POST", path: "/api/v1/namespaces/team-a/pods/web/exec", query: "command=sh&stdin=true",
			want: Info{Verb: "create", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "pods", Name: "web", Subresource: "exec"}},
		{name: "create deployment", method: "POST", path: "/apis/apps/v1/namespaces/team-a/deployments",
			want: Info{Verb: "create", IsResource: true, APIGroup: "apps", APIVersion: "v1", Namespace: "team-a", Resource: "deployments"}},
		{name: "patch", method: "PATCH", path: "/apis/apps/v1/namespaces/team-a/deployments/api/scale",
			want: Info{Verb: "patch", IsResource: true, APIGroup: "apps", APIVersion: "v1", Namespace: "team-a", Resource: "deployments", Name: "api", Subresource: "scale"}},
		{name: "delete collection", method: "DELETE", path: "/api/v1/namespaces/team-a/configmaps",
			want: Info{Verb: "deletecollection", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "configmaps"}},
		{name: "namespace itself", method: "GET", path: "/api/v1/namespaces/team-a",
			want: Info{Verb: "get", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "namespaces", Name: "team-a"}},
		{name: "namespace status", method: "PUT", path: "/api/v1/namespaces/team-a/status",
			want: Info{Verb: "update", IsResource: true, APIVersion: "v1", Namespace: "team-a", Resource: "namespaces", Name: "team-a", Subresource: "status"}},
		{name: "list namespaces", method: "GET", path: "/api/v1/namespaces",
			want: Info{Verb: "list", IsResource: true, APIVersion: "v1", Resource: "namespaces"}},
		{name: "cluster scoped", method: "DELETE", path: "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
			want: Info{Verb: "delete", IsResource: true, APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1", Resource: "clusterroles", Name: "admin"}},
		{name: "version", method: "GET", path: "/version",
			want: Info{Verb: "get", Path: "/version"}},
		{name: "discovery", method: "GET", path: "/apis/apps/v1",
			want: Info{Verb: "get", Path: "/apis/apps/v1"}},
		{name: "api root", method: "GET", path: "/api",
			want: Info{Verb: "get", Path: "/api"}},
		{name: "empty", method: "GET", path: "",
			want: Info{Verb: "get"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.method, tt.path, tt.query)
			tt.want.Path = tt.path
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%s %s?%s) (-want +got):\n%s", tt.method, tt.path, tt.query, diff)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("GET", "/api/v1/namespaces/team-a/pods", "watch=true")
	f.Add("POST", "/apis/apps/v1/namespaces/x/deployments/y/scale", "")
	f.Add("DELETE", "/api/v1/watch/namespaces", "fieldSelector=metadata.name%3Dz")
	f.Add("GET", "//api//v1/", "%zz")
	f.Fuzz(func(t *testing.T, method, path, query string) {
		info := Parse(method, path, query)
		if info.Verb == "" && method != "" {
			t.Fatalf("no verb for %q %q", method, path)
		}
		for _, v := range []string{info.Namespace, info.Resource, info.Subresource, info.APIGroup, info.APIVersion} {
			if strings.Contains(v, "/") {
				t.Fatalf("segment with a slash %q from %q", v, path)
			}
		}
		if info.IsResource && info.Resource == "" {
			t.Fatalf("resource request without a resource: %q", path)
		}
		if !info.IsResource && (info.Resource != "" || info.Name != "" || info.Namespace != "") {
			t.Fatalf("non-resource request with resource fields: %+v", info)
		}
		if info.Name == "" && info.IsResource && (info.Verb == "get" || info.Verb == "delete") && info.Subresource == "" {
			t.Fatalf("get/delete without a name: %+v", info)
		}
	})
}
