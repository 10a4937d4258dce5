package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// helpText runs "BIN ARGS... --help" and returns what it printed. Go's flag
// package prints a subcommand's flags to stderr, so both streams are kept.
// A non-zero exit is accepted as long as something was printed.
func helpText(ctx context.Context, bin string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(args, "--help")...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "LANG=C"}
	err := cmd.Run()
	text := strings.TrimRight(out.String(), "\n")
	if strings.TrimSpace(text) == "" {
		return "", fmt.Errorf("run %s %s --help: no output (%v)", bin, strings.Join(args, " "), err)
	}
	return text + "\n", nil
}

// roffEscape makes plain text safe inside a .nf block: backslashes doubled,
// hyphens as \-, and lines starting with a control character guarded.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// manPage renders a simple man page from the --help output of a binary and
// of its subcommands. The first line of the main help ("NAME does X.")
// becomes the NAME section.
func manPage(b binary, version, mainHelp string, cmdHelp map[string]string) string {
	first, rest, _ := strings.Cut(mainHelp, "\n")
	what := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(first, b.name)), ".")
	what = strings.TrimPrefix(what, "is ")
	if what == "" {
		what = "part of the postern access plane"
	}
	var w strings.Builder
	fmt.Fprintf(&w, ".\\\" Generated from %s --help by packaging/mkpkg; do not edit.\n", b.name)
	fmt.Fprintf(&w, ".TH %s %d \"\" \"postern %s\" \"postern manual\"\n", strings.ToUpper(roffEscape(b.name)), b.manSection, roffEscape(version))
	fmt.Fprintf(&w, ".SH NAME\n%s \\- %s\n", roffEscape(b.name), roffEscape(what))
	fmt.Fprintf(&w, ".SH DESCRIPTION\n%s\n.PP\n.nf\n%s\n.fi\n", roffEscape(strings.TrimSuffix(first, ".")+"."), roffEscape(strings.Trim(rest, "\n")))
	if len(b.commands) > 0 {
		w.WriteString(".SH COMMANDS\n")
		for _, c := range b.commands {
			fmt.Fprintf(&w, ".SS %s %s\n.nf\n%s\n.fi\n", roffEscape(b.name), roffEscape(c), roffEscape(strings.Trim(cmdHelp[c], "\n")))
		}
	}
	if b.files != "" {
		fmt.Fprintf(&w, ".SH FILES\n%s", b.files)
	}
	w.WriteString(".SH SEE ALSO\n")
	var see []string
	for _, p := range packages {
		for _, o := range p.binaries {
			if o.name != b.name {
				see = append(see, fmt.Sprintf(".BR %s (%d)", o.name, o.manSection))
			}
		}
	}
	w.WriteString(strings.Join(see, ",\n") + "\n")
	w.WriteString(".PP\nThe deployment guide docs/deploy.md and the configuration reference\ndocs/config.md in the postern source tree.\n")
	return w.String()
}

// gzipBytes compresses b reproducibly (no name, no timestamp), as Debian
// policy wants man pages.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
