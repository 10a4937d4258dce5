package client

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// caLine is one @cert-authority line of a known_hosts file.
type caLine struct {
	patterns []string
	key      ssh.PublicKey
}

// hostKeyCallback checks the bastion's host key against a known_hosts
// file the way OpenSSH does: host certificates against its
// @cert-authority lines (patterns matched against "host", or "[host]:port"
// when the port is not 22), plain keys against its other lines.
func hostKeyCallback(path string) (ssh.HostKeyCallback, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts %s: %w", path, err)
	}
	var cas []caLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "@cert-authority" {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.Join(f[2:], " ")))
		if err != nil {
			continue
		}
		cas = append(cas, caLine{patterns: strings.Split(f[1], ","), key: k})
	}
	plain, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts %s: %w", path, err)
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, address string) bool {
			name := knownhostsName(address)
			for _, l := range cas {
				if bytes.Equal(l.key.Marshal(), auth.Marshal()) && matchPatterns(l.patterns, name) {
					return true
				}
			}
			return false
		},
		HostKeyFallback: plain,
	}
	return checker.CheckHostKey, nil
}

// knownhostsName is how OpenSSH names host:port in known_hosts.
func knownhostsName(address string) string {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return address
	}
	if port == "22" {
		return host
	}
	return "[" + host + "]:" + port
}

// matchPatterns applies an OpenSSH pattern list: a negated match refuses,
// otherwise any positive match accepts.
func matchPatterns(patterns []string, name string) bool {
	ok := false
	for _, p := range patterns {
		if neg, found := strings.CutPrefix(p, "!"); found {
			if wildcard(neg, name) {
				return false
			}
			continue
		}
		if wildcard(p, name) {
			ok = true
		}
	}
	return ok
}

// wildcard matches name against an OpenSSH pattern with * and ?.
func wildcard(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
		default:
			if len(s) == 0 || !strings.EqualFold(p[:1], s[:1]) {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}
