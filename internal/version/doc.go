// Package version holds the build version, set at link time with
// -ldflags "-X github.com/postern-dev/postern/internal/version.Version=v1.2.3".
package version
