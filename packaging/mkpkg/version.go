package main

import (
	"regexp"
	"strings"
)

// describeRe matches `git describe --tags` output: TAG[-N-gHASH][-dirty].
var describeRe = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.]*)(?:-([0-9]+)-(g[0-9a-f]+))?(-dirty)?$`)

// packageVersion turns a build version (a tag, `git describe` output, a bare
// commit hash or "dev") into a version that dpkg and rpm both accept and
// order sensibly:
//
//	v1.2.3                  -> 1.2.3
//	v1.2.3-4-gabc1234       -> 1.2.3+4.gabc1234   (after 1.2.3, before 1.2.4)
//	v1.2.3-4-gabc1234-dirty -> 1.2.3+4.gabc1234.dirty
//	abc1234-dirty, dev      -> 0.0.0~git.abc1234.dirty, 0.0.0~dev (before any release)
//
// The binaries keep the original string (postern-signer --version).
func packageVersion(v string) string {
	if m := describeRe.FindStringSubmatch(v); m != nil {
		out := m[1]
		var meta []string
		if m[2] != "" {
			meta = append(meta, m[2], m[3])
		}
		if m[4] != "" {
			meta = append(meta, "dirty")
		}
		if len(meta) > 0 {
			out += "+" + strings.Join(meta, ".")
		}
		return out
	}
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '.':
			return r
		}
		return '.'
	}, v)
	clean = strings.Trim(clean, ".")
	if clean == "" {
		clean = "unknown"
	}
	if regexp.MustCompile(`^[0-9a-f]{7,40}(\.dirty)?$`).MatchString(clean) {
		clean = "git." + clean
	}
	return "0.0.0~" + clean
}
