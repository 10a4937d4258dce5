package pkgtest

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/testenv"
)

const (
	// testVersion is what `git describe --tags --dirty` prints a few
	// commits after a tag; the packages must turn it into a version both
	// dpkg and rpm accept and order after the tag.
	testVersion = "v1.2.3-4-gabc1234-dirty"
	pkgVersion  = "1.2.3+4.gabc1234.dirty"
)

// entry is a packaged path as ls -l shows it.
type entry struct{ Mode, Owner, Group string }

// serverFiles is everything postern-server contains besides plain parent
// directories (root:root 0755).
var serverFiles = map[string]entry{
	"/etc/postern":                                       {"drwxr-x---", "root", "postern"},
	"/etc/postern/postern.toml":                          {"-rw-r-----", "root", "postern"},
	"/usr/bin/postern-signer":                            {"-rwxr-xr-x", "root", "root"},
	"/usr/bin/postern-bastion":                           {"-rwxr-xr-x", "root", "root"},
	"/usr/lib/systemd/system/postern-signer.service":     {"-rw-r--r--", "root", "root"},
	"/usr/lib/systemd/system/postern-bastion.service":    {"-rw-r--r--", "root", "root"},
	"/usr/share/doc/postern-server/examples/port22.conf": {"-rw-r--r--", "root", "root"},
	"/usr/share/man/man8/postern-signer.8.gz":            {"-rw-r--r--", "root", "root"},
	"/usr/share/man/man8/postern-bastion.8.gz":           {"-rw-r--r--", "root", "root"},
	"/var/lib/postern":                                   {"drwxr-x---", "postern", "postern"},
	"/var/lib/postern/signer":                            {"drwx------", "postern", "postern"},
	"/var/lib/postern/bastion":                           {"drwxr-x---", "postern", "postern"},
	"/var/lib/postern/recordings":                        {"drwxr-x---", "postern", "postern"},
}

var clientFiles = map[string]entry{
	"/usr/bin/postern":                   {"-rwxr-xr-x", "root", "root"},
	"/usr/share/man/man1/postern.1.gz":   {"-rw-r--r--", "root", "root"},
	"/usr/bin/kube-exec":                 {"-rwxr-xr-x", "root", "root"},
	"/usr/share/man/man1/kube-exec.1.gz": {"-rw-r--r--", "root", "root"},
}

// forwarderFiles is postern-kube-forwarder: its binary, the unit, its
// configuration and data directory. /etc/postern and /var/lib/postern are
// exactly as in postern-server.
var forwarderFiles = map[string]entry{
	"/usr/bin/postern-kube-forwarder":                 {"-rwxr-xr-x", "root", "root"},
	"/usr/share/man/man8/postern-kube-forwarder.8.gz": {"-rw-r--r--", "root", "root"},
	"/etc/postern":                     {"drwxr-x---", "root", "postern"},
	"/etc/postern/kube-forwarder.toml": {"-rw-r-----", "root", "postern"},
	"/usr/lib/systemd/system/postern-kube-forwarder.service": {"-rw-r--r--", "root", "root"},
	"/var/lib/postern":                {"drwxr-x---", "postern", "postern"},
	"/var/lib/postern/kube-forwarder": {"drwx------", "postern", "postern"},
}

var plainDir = entry{"drwxr-xr-x", "root", "root"}

// pkgWant is what one package must be.
type pkgWant struct {
	name, summary string
	deb, rpm      string // file names for amd64
	files         map[string]entry
	conffile      string // the one conffile, "" for none
	// scripts maps deb control file names (preinst, …) to the maintainer
	// scripts under packaging/; nil: the package has none.
	scripts map[string]string
	// deb Depends and Recommends; rpm Requires (without rpmlib()).
	depends, recommends, requires string
}

var (
	serverPkg = pkgWant{
		name: "postern-server", summary: "postern access plane: SSH certificate authority and bastion",
		deb: "postern-server_" + pkgVersion + "_amd64.deb", rpm: "postern-server-" + pkgVersion + "-1.x86_64.rpm",
		files: serverFiles, conffile: "/etc/postern/postern.toml",
		scripts: map[string]string{
			"preinst": "scripts/preinstall.sh", "postinst": "scripts/postinstall.sh",
			"prerm": "scripts/preremove.sh", "postrm": "scripts/postremove.sh",
		},
		recommends: "openssh-client",
	}
	clientPkg = pkgWant{
		name: "postern", summary: "postern access plane: the command-line client",
		deb: "postern_" + pkgVersion + "_amd64.deb", rpm: "postern-" + pkgVersion + "-1.x86_64.rpm",
		files: clientFiles, recommends: "openssh-client",
	}
	forwarderPkg = pkgWant{
		name: "postern-kube-forwarder", summary: "postern access plane: the kube forwarder service",
		deb: "postern-kube-forwarder_" + pkgVersion + "_amd64.deb", rpm: "postern-kube-forwarder-" + pkgVersion + "-1.x86_64.rpm",
		files: forwarderFiles, conffile: "/etc/postern/kube-forwarder.toml",
		scripts: map[string]string{
			// the same preinstall as postern-server: one way to make the user
			"preinst": "scripts/preinstall.sh", "postinst": "scripts/kube-forwarder/postinstall.sh",
			"prerm": "scripts/kube-forwarder/preremove.sh", "postrm": "scripts/kube-forwarder/postremove.sh",
		},
	}
	allPkgs = []pkgWant{serverPkg, clientPkg, forwarderPkg}
)

var rpmScriptTags = map[string]string{"preinst": "PREIN", "postinst": "POSTIN", "prerm": "PREUN", "postrm": "POSTUN"}

func TestPackages(t *testing.T) {
	goBin := testenv.RequireBinary(t, "go")
	dpkgDeb := testenv.RequireBinary(t, "dpkg-deb")
	rpmBin := testenv.RequireBinary(t, "rpm")
	analyze := testenv.RequireBinary(t, "systemd-analyze")
	root := moduleRoot(t, goBin)
	dist := buildPackages(t, goBin, root)
	for _, p := range allPkgs {
		for _, f := range []string{p.deb, p.rpm} {
			if _, err := os.Stat(filepath.Join(dist, f)); err != nil {
				t.Fatalf("mkpkg did not write %s: %v", f, err)
			}
		}
	}
	deb := filepath.Join(dist, serverPkg.deb)
	readPackaging := func(t *testing.T, rel string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, "packaging", rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("deb-metadata", func(t *testing.T) {
		for _, p := range allPkgs {
			path := filepath.Join(dist, p.deb)
			fields := map[string]string{}
			for _, f := range []string{"Package", "Version", "Architecture", "Section", "Priority", "Maintainer", "Recommends", "Homepage", "Depends"} {
				fields[f] = strings.TrimSpace(mustRun(t, "", nil, dpkgDeb, "--field", path, f))
			}
			want := map[string]string{
				"Package": p.name, "Version": pkgVersion, "Architecture": "amd64",
				"Section": "net", "Priority": "optional", "Recommends": p.recommends,
				"Homepage": "https://github.com/postern-dev/postern", "Depends": p.depends,
			}
			for k, v := range want {
				if fields[k] != v {
					t.Errorf("%s: %s = %q, want %q", p.deb, k, fields[k], v)
				}
			}
			if fields["Maintainer"] == "" {
				t.Errorf("%s: no Maintainer", p.deb)
			}
			info := mustRun(t, "", nil, dpkgDeb, "--info", path)
			if !strings.Contains(info, "Description: "+p.summary+"\n") {
				t.Errorf("dpkg-deb --info %s: no synopsis line:\n%s", p.deb, info)
			}

			ctrl := t.TempDir()
			mustRun(t, "", nil, dpkgDeb, "--control", path, ctrl)
			wantConf := ""
			if p.conffile != "" {
				wantConf = p.conffile + "\n"
			}
			if got, _ := os.ReadFile(filepath.Join(ctrl, "conffiles")); string(got) != wantConf {
				t.Errorf("%s: conffiles = %q, want %q", p.deb, got, wantConf)
			}
			for _, name := range []string{"preinst", "postinst", "prerm", "postrm"} {
				src, wantScript := p.scripts[name]
				got, err := os.ReadFile(filepath.Join(ctrl, name))
				switch {
				case !wantScript && err == nil:
					t.Errorf("%s has a %s script; it needs none", p.deb, name)
				case !wantScript:
				case err != nil:
					t.Errorf("%s: no %s in the control archive: %v", p.deb, name, err)
				case !bytes.Equal(got, readPackaging(t, src)):
					t.Errorf("%s: %s differs from packaging/%s", p.deb, name, src)
				default:
					if fi, _ := os.Stat(filepath.Join(ctrl, name)); fi.Mode()&0o111 == 0 {
						t.Errorf("%s: %s is not executable (mode %v)", p.deb, name, fi.Mode())
					}
				}
			}
		}
	})

	t.Run("deb-files", func(t *testing.T) {
		for _, p := range allPkgs {
			checkListing(t, p.deb, debListing(t, dpkgDeb, filepath.Join(dist, p.deb)), p.files)
		}
	})

	t.Run("rpm", func(t *testing.T) {
		rpmEnv := []string{"HOME=" + t.TempDir()}
		for _, p := range allPkgs {
			path := filepath.Join(dist, p.rpm)
			info := mustRun(t, "", rpmEnv, rpmBin, "-qip", path)
			for _, f := range [][2]string{{"Name", p.name}, {"Version", pkgVersion}, {"Release", "1"},
				{"Architecture", "x86_64"}, {"Summary", p.summary}, {"URL", "https://github.com/postern-dev/postern"}} {
				if got := rpmField(info, f[0]); got != f[1] {
					t.Errorf("%s: rpm -qip %s = %q, want %q", p.rpm, f[0], got, f[1])
				}
			}
			out := mustRun(t, "", rpmEnv, rpmBin, "-qp", "--queryformat",
				`[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]`, path)
			got := map[string]entry{}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(l)
				if len(f) != 4 {
					t.Fatalf("%s: bad file line %q", p.rpm, l)
				}
				got[f[3]] = entry{f[0], f[1], f[2]}
			}
			checkListing(t, p.rpm, got, p.files)

			var requires []string
			for _, r := range strings.Split(strings.TrimSpace(mustRun(t, "", rpmEnv, rpmBin, "-qp", "--requires", path)), "\n") {
				if r != "" && !strings.HasPrefix(r, "rpmlib(") && r != "/bin/sh" {
					requires = append(requires, r)
				}
			}
			if got := strings.Join(requires, ", "); got != p.requires {
				t.Errorf("%s: rpm --requires = %q, want %q", p.rpm, got, p.requires)
			}
			if got := strings.TrimSpace(mustRun(t, "", rpmEnv, rpmBin, "-qp", "--configfiles", path)); got != p.conffile {
				t.Errorf("%s: rpm --configfiles = %q, want %q", p.rpm, got, p.conffile)
			}
			if p.conffile != "" {
				flags := mustRun(t, "", rpmEnv, rpmBin, "-qp", "--queryformat", `[%{FILEFLAGS:fflags} %{FILENAMES}\n]`, path)
				if !strings.Contains(flags, "cn "+p.conffile+"\n") {
					t.Errorf("%s: %s is not %%config(noreplace):\n%s", p.rpm, p.conffile, flags)
				}
			}
			for deb, tag := range rpmScriptTags {
				got := strings.TrimSpace(mustRun(t, "", rpmEnv, rpmBin, "-qp", "--queryformat", "%{"+tag+"}", path))
				src, ok := p.scripts[deb]
				switch {
				case !ok && got != "(none)":
					t.Errorf("%s has a %s scriptlet; it needs none", p.rpm, tag)
				case ok && got != strings.TrimSpace(string(readPackaging(t, src))):
					t.Errorf("%s: %s scriptlet differs from packaging/%s", p.rpm, tag, src)
				}
			}
		}
	})

	t.Run("config", func(t *testing.T) {
		// The shipped configuration parses with the real loader and names
		// exactly the directories the package creates.
		cfg, err := config.Load(filepath.Join(root, "packaging", "files", "postern.toml"))
		if err != nil {
			t.Fatalf("shipped postern.toml: %v", err)
		}
		for _, d := range []string{cfg.Signer.DataDir, cfg.Bastion.DataDir, cfg.Storage.LocalDir} {
			if e, ok := serverFiles[d]; !ok || e.Owner != "postern" {
				t.Errorf("config names %s, which the package does not create for postern", d)
			}
		}
		if filepath.Dir(cfg.Signer.OIDC.ClientSecretFile) != "/etc/postern" {
			t.Errorf("client_secret_file %s is outside /etc/postern", cfg.Signer.OIDC.ClientSecretFile)
		}
		// The forwarder's configuration: its data directory is the one
		// its package creates, its audit log and host key are in it, and
		// its kubeconfig is a file in /etc/postern.
		fcfg, err := config.Load(filepath.Join(root, "packaging", "files", "kube-forwarder.toml"))
		if err != nil {
			t.Fatalf("shipped kube-forwarder.toml: %v", err)
		}
		f := fcfg.Kube.Forwarder
		if e, ok := forwarderFiles[f.DataDir]; !ok || e.Owner != "postern" {
			t.Errorf("kube-forwarder.toml names data_dir %s, which the package does not create for postern", f.DataDir)
		}
		for _, p := range []string{f.AuditLog, f.HostKey, f.HostCA} {
			if filepath.Dir(p) != f.DataDir {
				t.Errorf("kube-forwarder.toml: %s is outside data_dir %s (the unit may write only there)", p, f.DataDir)
			}
		}
		if filepath.Dir(f.Kubeconfig) != "/etc/postern" {
			t.Errorf("kube-forwarder.toml: kubeconfig %q is not in /etc/postern", f.Kubeconfig)
		}
		if f.MetricsListen != "" {
			t.Errorf("kube-forwarder.toml turns on metrics_listen (%s); it must be the operator's choice", f.MetricsListen)
		}
		for name, want := range map[string]unitWant{
			"postern-signer.service":  {exec: "/usr/bin/postern-signer", config: "/etc/postern/postern.toml", rw: []string{cfg.Signer.DataDir}},
			"postern-bastion.service": {exec: "/usr/bin/postern-bastion", config: "/etc/postern/postern.toml", rw: []string{cfg.Bastion.DataDir, cfg.Storage.LocalDir}, hidden: []string{cfg.Signer.DataDir}},
			"postern-kube-forwarder.service": {exec: "/usr/bin/postern-kube-forwarder", config: "/etc/postern/kube-forwarder.toml", rw: []string{f.DataDir},
				hidden: []string{cfg.Signer.DataDir, cfg.Bastion.DataDir, cfg.Storage.LocalDir}},
		} {
			checkUnit(t, filepath.Join(root, "packaging", "systemd", name), want)
		}
	})

	t.Run("install", func(t *testing.T) {
		if os.Geteuid() != 0 {
			if testenv.Strict() {
				t.Fatal("installing needs root (CI/POSTERN_REQUIRE_E2E set: failing instead of skipping)")
			}
			t.Skip("installing needs root: creates the postern user, unpacks with owners, mounts a private /run")
		}
		sh := testenv.RequireBinary(t, "sh")
		tar := testenv.RequireBinary(t, "tar")
		unshare := testenv.RequireBinary(t, "unshare")
		testenv.RequireBinary(t, "useradd")
		testenv.RequireBinary(t, "getent")
		ctrl := t.TempDir()
		mustRun(t, "", nil, dpkgDeb, "--control", deb, ctrl)
		fctrl := t.TempDir()
		mustRun(t, "", nil, dpkgDeb, "--control", filepath.Join(dist, forwarderPkg.deb), fctrl)
		for _, c := range []struct {
			dir string
			p   pkgWant
		}{{ctrl, serverPkg}, {fctrl, forwarderPkg}} {
			for name := range c.p.scripts {
				mustRun(t, "", nil, sh, "-n", filepath.Join(c.dir, name))
			}
		}

		// preinst, for real and twice: it must be idempotent; the
		// forwarder's (the same script) then finds the user made.
		for _, arg := range []string{"install", "upgrade"} {
			mustRun(t, "", nil, sh, filepath.Join(ctrl, "preinst"), arg)
		}
		mustRun(t, "", nil, sh, filepath.Join(fctrl, "preinst"), "install")
		u, err := user.Lookup("postern")
		if err != nil {
			t.Fatalf("preinst did not create the postern user: %v", err)
		}
		g, err := user.LookupGroup("postern")
		if err != nil {
			t.Fatalf("preinst did not create the postern group: %v", err)
		}
		if u.Gid != g.Gid || u.HomeDir != "/var/lib/postern" {
			t.Errorf("postern user: gid %s home %s, want gid %s (postern) home /var/lib/postern", u.Gid, u.HomeDir, g.Gid)
		}
		pw := strings.Split(strings.TrimSpace(mustRun(t, "", nil, "getent", "passwd", "postern")), ":")
		if len(pw) != 7 || !strings.HasSuffix(pw[6], "nologin") {
			t.Errorf("postern user's shell: %q, want nologin", pw)
		}
		if uid, _ := strconv.Atoi(u.Uid); uid == 0 || uid >= 1000 {
			t.Errorf("postern uid %d is not a system uid", uid)
		}

		// Unpack as dpkg does: tar resolves the recorded owner names now
		// that the user exists. All three packages go into one root, as
		// on a host that runs everything (the forwarder's unit needs the
		// client package's kube-exec).
		dest := t.TempDir()
		installed := map[string]entry{}
		for _, p := range allPkgs {
			data := mustRunBytes(t, "", nil, dpkgDeb, "--fsys-tarfile", filepath.Join(dist, p.deb))
			cmd := exec.Command(tar, "-x", "-p", "--same-owner", "-C", dest)
			cmd.Stdin = bytes.NewReader(data)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tar -x %s: %v\n%s", p.deb, err, out)
			}
			for path, e := range p.files {
				installed[path] = e
			}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(g.Gid)
		for p, e := range installed {
			fi, err := os.Lstat(filepath.Join(dest, p))
			if err != nil {
				t.Errorf("unpacked root: %v", err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			wantUID, wantGID := 0, 0
			if e.Owner == "postern" {
				wantUID = uid
			}
			if e.Group == "postern" {
				wantGID = gid
			}
			if int(st.Uid) != wantUID || int(st.Gid) != wantGID || fi.Mode().String() != e.Mode {
				t.Errorf("unpacked %s: %s %d:%d, want %s %d:%d", p, fi.Mode(), st.Uid, st.Gid, e.Mode, wantUID, wantGID)
			}
		}

		t.Run("binaries", func(t *testing.T) {
			for _, b := range []string{"postern-signer", "postern-bastion"} {
				out := mustRun(t, "", nil, filepath.Join(dest, "usr/bin", b), "--version")
				if strings.TrimSpace(out) != b+" "+testVersion {
					t.Errorf("%s --version = %q, want %q", b, out, b+" "+testVersion)
				}
			}
			out := mustRun(t, "", nil, filepath.Join(dest, "usr/bin/postern-signer"), "check-config", "--config", filepath.Join(dest, "etc/postern/postern.toml"))
			if !strings.HasSuffix(strings.TrimSpace(out), ": ok") {
				t.Errorf("check-config of the shipped config: %s", out)
			}
			for man, want := range map[string]string{
				"usr/share/man/man8/postern-signer.8.gz":  `.TH POSTERN\-SIGNER 8`,
				"usr/share/man/man8/postern-bastion.8.gz": `.TH POSTERN\-BASTION 8`,
			} {
				if page := gunzip(t, filepath.Join(dest, man)); !strings.Contains(page, want) || !strings.Contains(page, "check\\-config") {
					t.Errorf("%s: not a man page made from --help:\n%s", man, page)
				}
			}
			kubeExec := filepath.Join(dest, "usr/bin/kube-exec")
			if out := mustRun(t, "", nil, kubeExec, "--version"); strings.TrimSpace(out) != "kube-exec "+testVersion {
				t.Errorf("kube-exec --version = %q", out)
			}
			fwd := filepath.Join(dest, "usr/bin/postern-kube-forwarder")
			if out := mustRun(t, "", nil, fwd, "--version"); strings.TrimSpace(out) != "postern-kube-forwarder "+testVersion {
				t.Errorf("postern-kube-forwarder --version = %q", out)
			}
			// The forwarder's man page documents what its unit runs.
			if page := gunzip(t, filepath.Join(dest, "usr/share/man/man8/postern-kube-forwarder.8.gz")); !strings.Contains(page, ".TH POSTERN\\-KUBE\\-FORWARDER 8") ||
				!strings.Contains(page, "\\-log\\-format") || !strings.Contains(page, "/etc/postern/kube-forwarder.toml") {
				t.Errorf("postern-kube-forwarder.8: no --log-format or kube-forwarder.toml:\n%s", page)
			}
			// The shipped forwarder configuration loads and wants only
			// what its CHANGE lines say; kube-exec forwarder runs the
			// forwarder installed next to it.
			for _, argv := range [][]string{{fwd}, {kubeExec, "forwarder"}} {
				out, err := run("", nil, argv[0], append(argv[1:], "--config", filepath.Join(dest, "etc/postern/kube-forwarder.toml"))...)
				if err == nil || !strings.Contains(out, "kube.forwarder.cluster: required to run a forwarder") {
					t.Errorf("%s with the shipped config (%v): %s", strings.Join(argv, " "), err, out)
				}
			}
		})

		t.Run("maintainer-scripts", func(t *testing.T) {
			testenv.RequireBinary(t, "mount")
			type scriptCase struct {
				script, arg string
				systemd     bool
				want        []string // systemctl calls, in order
			}
			fwd := "postern-kube-forwarder.service"
			for _, pc := range []struct {
				p     pkgWant
				ctrl  string
				cases []scriptCase
			}{
				{serverPkg, ctrl, []scriptCase{
					{"postinst", "configure", true, []string{"daemon-reload", "is-active --quiet postern-signer.service", "is-active --quiet postern-bastion.service"}},
					{"postinst", "configure", false, nil},
					{"prerm", "upgrade", true, nil},
					{"prerm", "1", true, nil}, // rpm upgrade
					{"prerm", "remove", true, []string{"--no-reload disable --now postern-signer.service postern-bastion.service"}},
					{"prerm", "0", true, []string{"--no-reload disable --now postern-signer.service postern-bastion.service"}},
					{"prerm", "remove", false, nil},
					{"postrm", "upgrade", true, nil},
					{"postrm", "1", true, nil},
					{"postrm", "remove", true, []string{"daemon-reload"}},
					{"postrm", "purge", true, []string{"daemon-reload"}},
					{"postrm", "0", true, []string{"daemon-reload"}},
					{"postrm", "purge", false, nil},
				}},
				{forwarderPkg, fctrl, []scriptCase{
					{"postinst", "configure", true, []string{"daemon-reload", "is-active --quiet " + fwd}},
					{"postinst", "1", true, []string{"daemon-reload", "is-active --quiet " + fwd}}, // rpm install
					{"postinst", "configure", false, nil},
					{"prerm", "upgrade", true, nil},
					{"prerm", "1", true, nil},
					{"prerm", "remove", true, []string{"--no-reload disable --now " + fwd}},
					{"prerm", "0", true, []string{"--no-reload disable --now " + fwd}},
					{"prerm", "remove", false, nil},
					{"postrm", "upgrade", true, nil},
					{"postrm", "1", true, nil},
					{"postrm", "remove", true, []string{"daemon-reload"}},
					{"postrm", "purge", true, []string{"daemon-reload"}},
					{"postrm", "0", true, []string{"daemon-reload"}},
					{"postrm", "purge", false, nil},
				}},
			} {
				for _, tc := range pc.cases {
					calls := runScript(t, sh, unshare, filepath.Join(pc.ctrl, tc.script), tc.arg, tc.systemd)
					if diff := cmp.Diff(tc.want, calls); diff != "" {
						t.Errorf("%s %s %s (systemd running: %v): systemctl calls (-want +got):\n%s", pc.p.name, tc.script, tc.arg, tc.systemd, diff)
					}
				}
				// Purge keeps the CA keys, the host keys and the audit logs:
				// no script deletes data or the user.
				for name := range pc.p.scripts {
					b, _ := os.ReadFile(filepath.Join(pc.ctrl, name))
					for _, l := range strings.Split(string(b), "\n") {
						l = strings.TrimSpace(l)
						if strings.HasPrefix(l, "#") {
							continue
						}
						for _, bad := range []string{"rm ", "userdel", "deluser", "groupdel", "delgroup", "/var/lib/postern/signer"} {
							if strings.Contains(l, bad) {
								t.Errorf("%s %s: %q: maintainer scripts must not remove data or the user", pc.p.name, name, l)
							}
						}
					}
				}
			}
		})

		t.Run("systemd-units", func(t *testing.T) {
			// systemd-analyze --root needs the distribution's own units
			// (sysinit.target, network-online.target, …) inside the root.
			units := "/usr/lib/systemd/system"
			if _, err := os.Stat(filepath.Join(units, "sysinit.target")); err != nil {
				units = "/lib/systemd/system"
			}
			copyMissing(t, units, filepath.Join(dest, "usr/lib/systemd/system"))
			// ExecReload runs /bin/kill, which every system has (procps)
			// but this root does not: give it the host's.
			kill, err := exec.LookPath("kill")
			if err != nil {
				t.Fatalf("no kill binary on this host: %v", err)
			}
			if err := os.MkdirAll(filepath.Join(dest, "bin"), 0o755); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(kill); err != nil {
				t.Fatal(err)
			} else if err := os.WriteFile(filepath.Join(dest, "bin/kill"), b, 0o755); err != nil {
				t.Fatal(err)
			}
			env := []string{"MANPATH=" + filepath.Join(dest, "usr/share/man"), "SYSTEMD_LOG_COLOR=0"}
			unitNames := []string{"postern-signer.service", "postern-bastion.service", "postern-kube-forwarder.service"}
			var unitPaths []string
			for _, u := range unitNames {
				unitPaths = append(unitPaths, "/usr/lib/systemd/system/"+u)
			}
			// verify checks the three units; bindLow says whether the
			// bastion may bind ports below 1024 (only with the port-22
			// drop-in).
			verify := func(t *testing.T, bindLow bool) {
				out := mustRun(t, "", env, analyze, append([]string{"verify", "--root=" + dest}, unitPaths...)...)
				if strings.TrimSpace(out) != "" {
					t.Errorf("systemd-analyze verify warned:\n%s", out)
				}
				// Exposure 2.0 ("OK") at most: dropping a hardening setting
				// fails here.
				for _, u := range unitNames {
					out, err := run("", env, analyze, "security", "--offline=yes", "--root="+dest, "--threshold=20", u)
					if err != nil {
						t.Errorf("systemd-analyze security %s: exposure above 2.0 (%v):\n%s", u, err, out)
					}
					mark := "✓" // no capability
					if bindLow && u == "postern-bastion.service" {
						mark = "✗"
					}
					if want := mark + " CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE"; !strings.Contains(out, want) {
						t.Errorf("systemd-analyze security %s: no line %q:\n%s", u, want, out)
					}
				}
			}
			t.Run("as-shipped", func(t *testing.T) { verify(t, false) })
			t.Run("port22-drop-in", func(t *testing.T) {
				dropin := filepath.Join(dest, "etc/systemd/system/postern-bastion.service.d")
				if err := os.MkdirAll(dropin, 0o755); err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(dest, "usr/share/doc/postern-server/examples/port22.conf"))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dropin, "port22.conf"), b, 0o644); err != nil {
					t.Fatal(err)
				}
				verify(t, true)
			})
		})
	})
}

// moduleRoot is the directory of postern's go.mod.
func moduleRoot(t *testing.T, goBin string) string {
	out := mustRun(t, "", nil, goBin, "env", "GOMOD")
	return filepath.Dir(strings.TrimSpace(out))
}

// buildPackages runs packaging/mkpkg (its own module) for amd64.
func buildPackages(t *testing.T, goBin, root string) string {
	dist := t.TempDir()
	out, err := run(filepath.Join(root, "packaging", "mkpkg"), []string{"SOURCE_DATE_EPOCH=1700000000"},
		goBin, "run", ".", "-src", root, "-out", dist, "-arch", "amd64", "-formats", "deb,rpm", "-version", testVersion)
	if err != nil {
		t.Fatalf("mkpkg: %v\n%s", err, out)
	}
	return dist
}

// debListing parses dpkg-deb -c into path -> entry.
func debListing(t *testing.T, dpkgDeb, deb string) map[string]entry {
	out := mustRun(t, "", nil, dpkgDeb, "-c", deb)
	m := map[string]entry{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("%s: bad dpkg-deb -c line %q", deb, l)
		}
		owner, group, _ := strings.Cut(f[1], "/")
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if p == "" {
			continue
		}
		m[p] = entry{f[0], owner, group}
	}
	return m
}

// checkListing compares a package's files with want; other entries may only
// be plain parent directories.
func checkListing(t *testing.T, pkg string, got, want map[string]entry) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s: missing %s", pkg, p)
		case g != w:
			t.Errorf("%s: %s is %s %s:%s, want %s %s:%s", pkg, p, g.Mode, g.Owner, g.Group, w.Mode, w.Owner, w.Group)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok && g != plainDir {
			t.Errorf("%s: unexpected %s (%s %s:%s)", pkg, p, g.Mode, g.Owner, g.Group)
		}
	}
}

func rpmField(info, name string) string {
	for _, l := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

type unitWant struct {
	exec   string   // the command, before --config
	config string   // the file after --config
	rw     []string // must be in ReadWritePaths=
	hidden []string // must be in InaccessiblePaths=
}

// checkUnit checks the hardening every postern service must keep.
func checkUnit(t *testing.T, path string, want unitWant) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	svc := map[string][]string{}
	section := ""
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = l
		default:
			k, v, _ := strings.Cut(l, "=")
			svc[section+k] = append(svc[section+k], v)
		}
	}
	name := filepath.Base(path)
	for k, v := range map[string]string{
		"User": "postern", "Group": "postern", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute": "yes",
		"LockPersonality": "yes", "ProtectKernelTunables": "yes", "SystemCallArchitectures": "native",
	} {
		if got := svc["[Service]"+k]; !slices.Equal(got, []string{v}) {
			t.Errorf("%s: %s=%q, want exactly %q", name, k, got, v)
		}
	}
	if !slices.Contains(svc["[Service]SystemCallFilter"], "@system-service") {
		t.Errorf("%s: SystemCallFilter lacks @system-service", name)
	}
	if es := svc["[Service]ExecStart"]; len(es) != 1 || !strings.HasPrefix(es[0], want.exec+" --config "+want.config) {
		t.Errorf("%s: ExecStart=%q", name, es)
	}
	if got := svc["[Install]WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("%s: WantedBy=%q", name, got)
	}
	rw := strings.Fields(strings.Join(svc["[Service]ReadWritePaths"], " "))
	for _, d := range want.rw {
		if !slices.Contains(rw, d) {
			t.Errorf("%s: ReadWritePaths=%q lacks %s", name, rw, d)
		}
	}
	hidden := strings.Fields(strings.Join(svc["[Service]InaccessiblePaths"], " "))
	for _, d := range want.hidden {
		if !slices.Contains(hidden, d) && !slices.Contains(hidden, "-"+d) {
			t.Errorf("%s: InaccessiblePaths=%q lacks %s", name, hidden, d)
		}
	}
}

// runScript runs a maintainer script in a private mount namespace whose
// /run is an empty tmpfs, with /run/systemd/system present when systemd is
// true, and a fake systemctl first in PATH. It returns the systemctl calls.
func runScript(t *testing.T, sh, unshare, script, arg string, systemd bool) []string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	fake := "#!/bin/sh\necho \"$*\" >>" + log + "\ncase \"$1\" in is-active) exit 3 ;; esac\nexit 0\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	mk := ""
	if systemd {
		mk = "mkdir -p /run/systemd/system && "
	}
	inner := "mount -t tmpfs -o mode=0755 postern-pkgtest /run && " + mk + `exec "$0" "$1" "$2"`
	out, err := run("", []string{"PATH=" + dir + ":" + os.Getenv("PATH")},
		unshare, "--mount", "--propagation", "private", sh, "-c", inner, sh, script, arg)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(script), arg, err, out)
	}
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// copyMissing copies the tree src into dst (files, directories, symlinks),
// leaving whatever dst already has.
func copyMissing(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if _, err := os.Lstat(to); err == nil {
			return nil
		}
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s into %s: %v", src, dst, err)
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// run runs a command with extra environment variables and returns its
// combined output.
func run(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// mustRunBytes returns only stdout (for binary output).
func mustRunBytes(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}
