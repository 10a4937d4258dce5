// Command mkpkg builds postern's .deb and .rpm packages with nfpm: it
// cross-compiles the binaries (CGO_ENABLED=0, -trimpath, the version linked
// in), renders man pages from their --help output, and packs the server
// package (postern-server), the client package (postern) and the kube
// forwarder's service package (postern-kube-forwarder) for each
// architecture. What goes into which package is declared in spec.go.
//
// It is its own module so that nfpm and its many dependencies stay out of
// postern's go.mod; run it from this directory:
//
//	go run . -src ../.. -version v1.2.3 -out ../../dist
//
// # Invariants
//
//   - A binary whose main package is missing or does not build fails the
//     run, naming the binary and the package.
//   - Nothing is enabled or started by the packages; /var/lib/postern (the
//     CA keys) is never removed, not even on purge.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm"
)

const (
	modulePath = "github.com/postern-dev/postern"
	homepage   = "https://github.com/postern-dev/postern"
)

type options struct {
	src        string   // module root of postern
	out        string   // where packages are written
	version    string   // build version, as given
	arches     []string // GOARCH values
	formats    []string // nfpm packagers
	maintainer string
	license    string
	mtime      time.Time // of every file and the package itself
}

func main() {
	var o options
	var arches, formats string
	flag.StringVar(&o.src, "src", "../..", "postern's module root `DIR`")
	flag.StringVar(&o.out, "out", "", "output `DIR` (default SRC/dist)")
	flag.StringVar(&o.version, "version", "dev", "build `VERSION` (a tag or git describe output)")
	flag.StringVar(&arches, "arch", "amd64,arm64", "comma-separated GOARCH `LIST`")
	flag.StringVar(&formats, "formats", "deb,rpm", "comma-separated package `FORMATS`")
	flag.StringVar(&o.maintainer, "maintainer", "postern developers <postern-dev@users.noreply.github.com>", "package maintainer")
	flag.StringVar(&o.license, "license", "NOASSERTION", "package license (SPDX)")
	flag.Parse()
	o.arches = splitList(arches)
	o.formats = splitList(formats)
	o.mtime = time.Now().UTC().Truncate(time.Second)
	if sde := os.Getenv("SOURCE_DATE_EPOCH"); sde != "" {
		sec, err := strconv.ParseInt(sde, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mkpkg: error: bad SOURCE_DATE_EPOCH %q\n", sde)
			os.Exit(2)
		}
		o.mtime = time.Unix(sec, 0).UTC()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "mkpkg: error: %v\n", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(ctx context.Context, o options) error {
	if runtime.GOOS != "linux" {
		return errors.New("man pages are rendered by running the binaries: run mkpkg on linux")
	}
	root, err := filepath.Abs(o.src)
	if err != nil {
		return err
	}
	if err := checkModule(root); err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "dist")
	}
	if o.out, err = filepath.Abs(o.out); err != nil {
		return err
	}
	for _, f := range o.formats {
		if _, err := nfpm.Get(f); err != nil {
			return fmt.Errorf("format %q: %w", f, err)
		}
	}
	if len(o.arches) == 0 || len(o.formats) == 0 {
		return errors.New("-arch and -formats must not be empty")
	}
	packagingDir := filepath.Join(root, "packaging")

	// Every binary must exist: one that is missing is an error for every
	// package that needs it, reported all at once.
	present := map[string]bool{}
	var missing []error
	for _, p := range packages {
		for _, b := range p.binaries {
			ok, err := isMainPackage(ctx, root, b.pkg)
			switch {
			case err != nil:
				return err
			case ok:
				present[b.name] = true
			default:
				missing = append(missing, fmt.Errorf("%s needs %s, but %s has no main package", p.name, b.name, b.pkg))
			}
		}
	}
	if len(missing) > 0 {
		return errors.Join(missing...)
	}

	work, err := os.MkdirTemp("", "postern-mkpkg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// Cross-compile every binary for every architecture, plus the host's
	// architecture to run --help for the man pages.
	buildArches := slices.Clone(o.arches)
	if !slices.Contains(buildArches, runtime.GOARCH) {
		buildArches = append(buildArches, runtime.GOARCH)
	}
	for _, arch := range buildArches {
		for _, p := range packages {
			for _, b := range p.binaries {
				if !present[b.name] {
					continue
				}
				out := filepath.Join(work, "bin", arch, b.name)
				if err := goBuild(ctx, root, b.pkg, arch, o.version, out); err != nil {
					return err
				}
			}
		}
	}

	pkgVersion := packageVersion(o.version)
	manDir := filepath.Join(work, "man")
	if err := os.MkdirAll(manDir, 0o755); err != nil {
		return err
	}
	for _, p := range packages {
		for _, b := range p.binaries {
			if !present[b.name] {
				continue
			}
			if err := writeManPage(ctx, b, filepath.Join(work, "bin", runtime.GOARCH, b.name), o.version, manDir); err != nil {
				return err
			}
		}
	}

	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	for _, p := range packages {
		for _, arch := range o.arches {
			for _, format := range o.formats {
				info := packageInfo(p, arch, format, pkgVersion, o, packagingDir, work, present)
				path, err := pack(info, format, o.out)
				if err != nil {
					return fmt.Errorf("package %s %s %s: %w", p.name, arch, format, err)
				}
				fmt.Printf("mkpkg: wrote %s\n", path)
			}
		}
	}
	return nil
}

// checkModule makes sure root is postern's module root.
func checkModule(root string) error {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return fmt.Errorf("read %s/go.mod (is -src postern's module root?): %w", root, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimSpace(first) != "module "+modulePath {
		return fmt.Errorf("%s/go.mod is not module %s", root, modulePath)
	}
	return nil
}

// isMainPackage reports whether pkg (relative to root) is a main package.
func isMainPackage(ctx context.Context, root, pkg string) (bool, error) {
	fi, err := os.Stat(filepath.Join(root, pkg))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("%s is not a directory", pkg)
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-f", "{{.Name}}", pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "no Go files") || strings.Contains(string(out), "build constraints exclude all Go files") {
			return false, nil
		}
		return false, fmt.Errorf("go list %s: %w\n%s", pkg, err, out)
	}
	return strings.TrimSpace(string(out)) == "main", nil
}

func goBuild(ctx context.Context, root, pkg, arch, version, out string) error {
	ldflags := "-s -w -X " + modulePath + "/internal/version.Version=" + version
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s for linux/%s: %w\n%s", pkg, arch, err, b)
	}
	return nil
}

func writeManPage(ctx context.Context, b binary, bin, version, dir string) error {
	mainHelp, err := helpText(ctx, bin)
	if err != nil {
		return err
	}
	cmdHelp := map[string]string{}
	for _, c := range b.commands {
		if cmdHelp[c], err = helpText(ctx, bin, c); err != nil {
			return err
		}
	}
	gz, err := gzipBytes([]byte(manPage(b, version, mainHelp, cmdHelp)))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s.%d.gz", b.name, b.manSection)), gz, 0o644)
}

// packageInfo describes one package file for nfpm.
func packageInfo(p pkgSpec, arch, format, version string, o options, packagingDir, work string, present map[string]bool) *nfpm.Info {
	var contents files.Contents
	add := func(src, dst, kind string, mode uint32, owner, group string) {
		contents = append(contents, &files.Content{
			Source: src, Destination: dst, Type: kind,
			FileInfo: &files.ContentFileInfo{Owner: owner, Group: group, Mode: fs.FileMode(mode), MTime: o.mtime},
		})
	}
	for _, b := range p.binaries {
		if !present[b.name] {
			continue
		}
		add(filepath.Join(work, "bin", arch, b.name), "/usr/bin/"+b.name, "", 0o755, "root", "root")
		man := fmt.Sprintf("%s.%d.gz", b.name, b.manSection)
		add(filepath.Join(work, "man", man), fmt.Sprintf("/usr/share/man/man%d/%s", b.manSection, man), "", 0o644, "root", "root")
	}
	for _, f := range p.files {
		add(filepath.Join(packagingDir, f.src), f.dst, f.kind, f.mode, f.owner, f.group)
	}
	for _, d := range p.dirs {
		add("", d.path, files.TypeDir, d.mode, d.owner, d.group)
	}

	info := &nfpm.Info{
		Name:          p.name,
		Arch:          arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    o.maintainer,
		Description:   p.summary + "\n" + p.description,
		Vendor:        "postern",
		Homepage:      homepage,
		License:       o.license,
		MTime:         o.mtime,
		Overridables: nfpm.Overridables{
			Contents:   contents,
			Recommends: p.recommends[format],
			Depends:    sameVersionDepends(p.sameVersion, format, version),
		},
	}
	info.RPM.Summary = p.summary
	if format == "rpm" {
		// rpm keeps the summary apart; deb's first description line is it.
		info.Description = p.description
	}
	info.RPM.Group = "System Environment/Daemons"
	if sc := p.scripts; sc != nil {
		info.Scripts = nfpm.Scripts{
			PreInstall:  filepath.Join(packagingDir, sc.preinstall),
			PostInstall: filepath.Join(packagingDir, sc.postinstall),
			PreRemove:   filepath.Join(packagingDir, sc.preremove),
			PostRemove:  filepath.Join(packagingDir, sc.postremove),
		}
	}
	return nfpm.WithDefaults(info)
}

// sameVersionDepends spells "exactly this version of each of names" in
// the format's syntax. An rpm dependency without a release matches every
// release of the version.
func sameVersionDepends(names []string, format, version string) []string {
	var out []string
	for _, n := range names {
		if format == "rpm" {
			out = append(out, n+" = "+version)
		} else {
			out = append(out, n+" (= "+version+")")
		}
	}
	return out
}

// pack writes the package into dir under its conventional name.
func pack(info *nfpm.Info, format, dir string) (string, error) {
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, packager.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	info.Target = path
	if err := packager.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}
