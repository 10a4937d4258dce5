package kubepath

import (
	"net/url"
	"strconv"
	"strings"
)

// Info describes one API request.
type Info struct {
	// Verb is the Kubernetes verb: get, list, watch, create, update,
	// patch, delete, deletecollection, proxy; for non-resource requests the
	// lower-cased HTTP method.
	Verb string
	// IsResource is false for paths such as /version, /healthz, /api.
	IsResource  bool
	APIGroup    string // "" for the core group
	APIVersion  string
	Namespace   string
	Resource    string
	Subresource string
	Name        string
	// Path is the request path, for non-resource requests.
	Path string
}

// namespaceSubresources are subresources of a namespace itself.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// Parse describes the request method path?rawQuery.
func Parse(method, path, rawQuery string) Info {
	info := Info{Path: path, Verb: strings.ToLower(method)}
	parts := splitPath(path)
	if len(parts) < 2 {
		return info
	}
	switch parts[0] {
	case "api":
		info.APIVersion = parts[1]
		parts = parts[2:]
	case "apis":
		if len(parts) < 3 {
			return info
		}
		info.APIGroup, info.APIVersion = parts[1], parts[2]
		parts = parts[3:]
	default:
		return info
	}
	if len(parts) == 0 {
		// discovery of a group version: not a resource request
		return Info{Path: path, Verb: info.Verb}
	}
	info.IsResource = true
	switch method {
	case "POST":
		info.Verb = "create"
	case "GET", "HEAD":
		info.Verb = "get"
	case "PUT":
		info.Verb = "update"
	case "PATCH":
		info.Verb = "patch"
	case "DELETE":
		info.Verb = "delete"
	default:
		info.Verb = strings.ToLower(method)
	}
	// /api/v1/watch/... and /api/v1/proxy/... (deprecated forms)
	special := false
	if parts[0] == "watch" || parts[0] == "proxy" {
		info.Verb = parts[0]
		special = true
		parts = parts[1:]
		if len(parts) == 0 {
			return Info{Path: path, Verb: strings.ToLower(method)}
		}
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		info.Namespace = parts[1]
		if len(parts) > 2 && !namespaceSubresources[parts[2]] {
			parts = parts[2:]
		}
	}
	info.Resource = parts[0]
	if len(parts) >= 2 {
		info.Name = parts[1]
	}
	if len(parts) >= 3 && !special {
		info.Subresource = parts[2]
	}
	q, _ := url.ParseQuery(rawQuery)
	if info.Name == "" && info.Verb == "get" {
		info.Verb = "list"
		if w, err := strconv.ParseBool(q.Get("watch")); err == nil && w {
			info.Verb = "watch"
		}
	}
	if info.Name == "" && (info.Verb == "list" || info.Verb == "watch") {
		// a list or watch of one object by field selector
		for sel := range strings.SplitSeq(q.Get("fieldSelector"), ",") {
			if v, ok := strings.CutPrefix(sel, "metadata.name="); ok {
				info.Name = v
			}
		}
	}
	if info.Name == "" && info.Verb == "delete" {
		info.Verb = "deletecollection"
	}
	return info
}

// splitPath splits a path into its non-empty segments, unescaped the way
// the API server's router sees them.
func splitPath(p string) []string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	var out []string
	for seg := range strings.SplitSeq(strings.Trim(p, "/"), "/") {
		if seg != "" {
			out = append(out, seg)
		}
	}
	return out
}
