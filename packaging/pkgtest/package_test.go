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

	serverDeb = "postern-server_" + pkgVersion + "_amd64.deb"
	clientDeb = "postern_" + pkgVersion + "_amd64.deb"
	serverRPM = "postern-server-" + pkgVersion + "-1.x86_64.rpm"
	clientRPM = "postern-" + pkgVersion + "-1.x86_64.rpm"
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

func clientFiles(root string) map[string]entry {
	m := map[string]entry{
		"/usr/bin/postern":                 {"-rwxr-xr-x", "root", "root"},
		"/usr/share/man/man1/postern.1.gz": {"-rw-r--r--", "root", "root"},
	}
	// kube-exec joins the client package once its main package exists.
	if _, err := os.Stat(filepath.Join(root, "kube-exec")); err == nil {
		m["/usr/bin/kube-exec"] = entry{"-rwxr-xr-x", "root", "root"}
		m["/usr/share/man/man1/kube-exec.1.gz"] = entry{"-rw-r--r--", "root", "root"}
	}
	return m
}

var plainDir = entry{"drwxr-xr-x", "root", "root"}

var scriptNames = map[string]string{ // deb control file -> packaging/scripts
	"preinst":  "preinstall.sh",
	"postinst": "postinstall.sh",
	"prerm":    "preremove.sh",
	"postrm":   "postremove.sh",
}

func TestPackages(t *testing.T) {
	goBin := testenv.RequireBinary(t, "go")
	dpkgDeb := testenv.RequireBinary(t, "dpkg-deb")
	rpmBin := testenv.RequireBinary(t, "rpm")
	analyze := testenv.RequireBinary(t, "systemd-analyze")
	root := moduleRoot(t, goBin)
	dist := buildPackages(t, goBin, root)
	for _, f := range []string{serverDeb, clientDeb, serverRPM, clientRPM} {
		if _, err := os.Stat(filepath.Join(dist, f)); err != nil {
			t.Fatalf("mkpkg did not write %s: %v", f, err)
		}
	}
	deb := filepath.Join(dist, serverDeb)

	t.Run("deb-metadata", func(t *testing.T) {
		fields := map[string]string{}
		for _, f := range []string{"Package", "Version", "Architecture", "Section", "Priority", "Maintainer", "Recommends", "Homepage", "Depends"} {
			fields[f] = strings.TrimSpace(mustRun(t, "", nil, dpkgDeb, "--field", deb, f))
		}
		want := map[string]string{
			"Package": "postern-server", "Version": pkgVersion, "Architecture": "amd64",
			"Section": "net", "Priority": "optional", "Recommends": "openssh-client",
			"Homepage": "https://github.com/postern-dev/postern", "Depends": "",
		}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("%s: %s = %q, want %q", serverDeb, k, fields[k], v)
			}
		}
		if fields["Maintainer"] == "" {
			t.Errorf("%s: no Maintainer", serverDeb)
		}
		info := mustRun(t, "", nil, dpkgDeb, "--info", deb)
		if !strings.Contains(info, "Description: postern access plane: SSH certificate authority and bastion") {
			t.Errorf("dpkg-deb --info: no synopsis line:\n%s", info)
		}

		ctrl := t.TempDir()
		mustRun(t, "", nil, dpkgDeb, "--control", deb, ctrl)
		if got, _ := os.ReadFile(filepath.Join(ctrl, "conffiles")); string(got) != "/etc/postern/postern.toml\n" {
			t.Errorf("conffiles = %q, want only /etc/postern/postern.toml", got)
		}
		for deb, src := range scriptNames {
			got, err := os.ReadFile(filepath.Join(ctrl, deb))
			if err != nil {
				t.Errorf("no %s in the control archive: %v", deb, err)
				continue
			}
			want, err := os.ReadFile(filepath.Join(root, "packaging", "scripts", src))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from packaging/scripts/%s", deb, src)
			}
			if fi, _ := os.Stat(filepath.Join(ctrl, deb)); fi.Mode()&0o111 == 0 {
				t.Errorf("%s is not executable (mode %v)", deb, fi.Mode())
			}
		}

		cdeb := filepath.Join(dist, clientDeb)
		if got := strings.TrimSpace(mustRun(t, "", nil, dpkgDeb, "--field", cdeb, "Package")); got != "postern" {
			t.Errorf("%s: Package = %q", clientDeb, got)
		}
		cctrl := t.TempDir()
		mustRun(t, "", nil, dpkgDeb, "--control", cdeb, cctrl)
		for deb := range scriptNames {
			if _, err := os.Stat(filepath.Join(cctrl, deb)); err == nil {
				t.Errorf("client package has a %s script; it needs none", deb)
			}
		}
	})

	t.Run("deb-files", func(t *testing.T) {
		checkListing(t, serverDeb, debListing(t, dpkgDeb, deb), serverFiles)
		checkListing(t, clientDeb, debListing(t, dpkgDeb, filepath.Join(dist, clientDeb)), clientFiles(root))
	})

	t.Run("rpm", func(t *testing.T) {
		rpmEnv := []string{"HOME=" + t.TempDir()}
		for _, tc := range []struct {
			file, name, summary string
			want                map[string]entry
		}{
			{serverRPM, "postern-server", "postern access plane: SSH certificate authority and bastion", serverFiles},
			{clientRPM, "postern", "postern access plane: the command-line client", clientFiles(root)},
		} {
			path := filepath.Join(dist, tc.file)
			info := mustRun(t, "", rpmEnv, rpmBin, "-qip", path)
			for _, f := range [][2]string{{"Name", tc.name}, {"Version", pkgVersion}, {"Release", "1"},
				{"Architecture", "x86_64"}, {"Summary", tc.summary}, {"URL", "https://github.com/postern-dev/postern"}} {
				if got := rpmField(info, f[0]); got != f[1] {
					t.Errorf("%s: rpm -qip %s = %q, want %q", tc.file, f[0], got, f[1])
				}
			}
			out := mustRun(t, "", rpmEnv, rpmBin, "-qp", "--queryformat",
				`[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]`, path)
			got := map[string]entry{}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(l)
				if len(f) != 4 {
					t.Fatalf("%s: bad file line %q", tc.file, l)
				}
				got[f[3]] = entry{f[0], f[1], f[2]}
			}
			checkListing(t, tc.file, got, tc.want)
		}

		path := filepath.Join(dist, serverRPM)
		if got := strings.TrimSpace(mustRun(t, "", rpmEnv, rpmBin, "-qp", "--configfiles", path)); got != "/etc/postern/postern.toml" {
			t.Errorf("rpm --configfiles = %q, want /etc/postern/postern.toml", got)
		}
		flags := mustRun(t, "", rpmEnv, rpmBin, "-qp", "--queryformat", `[%{FILEFLAGS:fflags} %{FILENAMES}\n]`, path)
		if !strings.Contains(flags, "cn /etc/postern/postern.toml\n") {
			t.Errorf("postern.toml is not %%config(noreplace):\n%s", flags)
		}
		for _, s := range []struct{ tag, file string }{
			{"PREIN", "preinstall.sh"}, {"POSTIN", "postinstall.sh"}, {"PREUN", "preremove.sh"}, {"POSTUN", "postremove.sh"},
		} {
			got := mustRun(t, "", rpmEnv, rpmBin, "-qp", "--queryformat", "%{"+s.tag+"}", path)
			want, err := os.ReadFile(filepath.Join(root, "packaging", "scripts", s.file))
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
				t.Errorf("rpm %s scriptlet differs from packaging/scripts/%s", s.tag, s.file)
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
		for name, want := range map[string]unitWant{
			"postern-signer.service":  {exec: "/usr/bin/postern-signer", rw: []string{cfg.Signer.DataDir}},
			"postern-bastion.service": {exec: "/usr/bin/postern-bastion", rw: []string{cfg.Bastion.DataDir, cfg.Storage.LocalDir}, hidden: []string{cfg.Signer.DataDir}},
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
		for name := range scriptNames {
			mustRun(t, "", nil, sh, "-n", filepath.Join(ctrl, name))
		}

		// preinst, for real and twice: it must be idempotent.
		for _, arg := range []string{"install", "upgrade"} {
			mustRun(t, "", nil, sh, filepath.Join(ctrl, "preinst"), arg)
		}
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
		// that the user exists.
		dest := t.TempDir()
		data := mustRunBytes(t, "", nil, dpkgDeb, "--fsys-tarfile", deb)
		cmd := exec.Command(tar, "-x", "-p", "--same-owner", "-C", dest)
		cmd.Stdin = bytes.NewReader(data)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tar -x: %v\n%s", err, out)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(g.Gid)
		for p, e := range serverFiles {
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
			for man, th := range map[string]string{
				"usr/share/man/man8/postern-signer.8.gz":  `.TH POSTERN\-SIGNER 8`,
				"usr/share/man/man8/postern-bastion.8.gz": `.TH POSTERN\-BASTION 8`,
			} {
				if page := gunzip(t, filepath.Join(dest, man)); !strings.Contains(page, th) || !strings.Contains(page, "check\\-config") {
					t.Errorf("%s: not a man page made from --help:\n%s", man, page)
				}
			}
		})

		t.Run("maintainer-scripts", func(t *testing.T) {
			testenv.RequireBinary(t, "mount")
			for _, tc := range []struct {
				script, arg string
				systemd     bool
				want        []string // systemctl calls, in order
			}{
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
			} {
				calls := runScript(t, sh, unshare, filepath.Join(ctrl, tc.script), tc.arg, tc.systemd)
				if diff := cmp.Diff(tc.want, calls); diff != "" {
					t.Errorf("%s %s (systemd running: %v): systemctl calls (-want +got):\n%s", tc.script, tc.arg, tc.systemd, diff)
				}
			}
			// Purge keeps the CA keys: no script deletes data or the user.
			for name := range scriptNames {
				b, _ := os.ReadFile(filepath.Join(ctrl, name))
				for _, l := range strings.Split(string(b), "\n") {
					l = strings.TrimSpace(l)
					if strings.HasPrefix(l, "#") {
						continue
					}
					for _, bad := range []string{"rm ", "userdel", "deluser", "groupdel", "delgroup", "/var/lib/postern/signer"} {
						if strings.Contains(l, bad) {
							t.Errorf("%s: %q: maintainer scripts must not remove data or the user", name, l)
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
			env := []string{"MANPATH=" + filepath.Join(dest, "usr/share/man"), "SYSTEMD_LOG_COLOR=0"}
			unitPaths := []string{"/usr/lib/systemd/system/postern-signer.service", "/usr/lib/systemd/system/postern-bastion.service"}
			// verify checks both units; bindLow says whether the bastion may
			// bind ports below 1024 (only with the port-22 drop-in).
			verify := func(t *testing.T, bindLow bool) {
				out := mustRun(t, "", env, analyze, append([]string{"verify", "--root=" + dest}, unitPaths...)...)
				if strings.TrimSpace(out) != "" {
					t.Errorf("systemd-analyze verify warned:\n%s", out)
				}
				// Exposure 2.0 ("OK") at most: dropping a hardening setting
				// fails here.
				for _, u := range []string{"postern-signer.service", "postern-bastion.service"} {
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
	exec   string
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
	if es := svc["[Service]ExecStart"]; len(es) != 1 || !strings.HasPrefix(es[0], want.exec+" --config /etc/postern/postern.toml") {
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
