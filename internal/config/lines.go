package config

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

var (
	tableRe = regexp.MustCompile(`^\s*\[\s*([A-Za-z0-9_.\-" ]+?)\s*\]\s*(#.*)?$`)
	arrayRe = regexp.MustCompile(`^\s*\[\[\s*([A-Za-z0-9_.\-" ]+?)\s*\]\]\s*(#.*)?$`)
	keyRe   = regexp.MustCompile(`^\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=`)
)

// indexLines maps key paths to the line they are written on. It follows
// table headers and counts array-of-tables entries, so "role[1].logins" and
// "signer.oidc.issuer" resolve. The un-indexed form ("role.logins") keeps
// its first occurrence. Lines inside multi-line strings or arrays may be
// misread; the result is only used for messages.
func indexLines(data []byte) map[string]int {
	idx := map[string]int{}
	counts := map[string]int{}
	prefix, plain := "", ""
	put := func(k string, line int) {
		if _, ok := idx[k]; !ok {
			idx[k] = line
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := arrayRe.FindStringSubmatch(line); m != nil {
			name := normKey(m[1])
			i := counts[name]
			counts[name]++
			prefix, plain = fmt.Sprintf("%s[%d]", name, i), name
			put(prefix, n)
			put(plain, n)
			continue
		}
		if m := tableRe.FindStringSubmatch(line); m != nil {
			name := normKey(m[1])
			// A sub-table of the latest array entry: "[bastion.node.labels]".
			prefix, plain = name, name
			for arr, c := range counts {
				if rest, ok := strings.CutPrefix(name, arr+"."); ok {
					prefix = fmt.Sprintf("%s[%d].%s", arr, c-1, rest)
				}
			}
			put(prefix, n)
			put(plain, n)
			continue
		}
		if m := keyRe.FindStringSubmatch(line); m != nil {
			k := normKey(m[1])
			if prefix != "" {
				put(prefix+"."+k, n)
				put(plain+"."+k, n)
			} else {
				put(k, n)
			}
		}
	}
	return idx
}

func normKey(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"`)
	}
	return strings.Join(parts, ".")
}

// stripIndex turns "role[1].logins" into "role.logins".
func stripIndex(k string) string {
	var b strings.Builder
	skip := false
	for _, r := range k {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}
