package main

// binary is one program built from this repository.
type binary struct {
	name string // installed as /usr/bin/NAME
	pkg  string // main package, relative to the module root
	// manSection is 8 for daemons and admin tools, 1 for user commands.
	manSection int
	// commands are subcommands whose "--help" goes into the man page.
	commands []string
	// files is roff text for the man page's FILES section ("" for none).
	files string
}

// file is a file from packaging/ placed into a package.
type file struct {
	src   string // relative to packaging/
	dst   string
	mode  uint32
	owner string
	group string
	kind  string // nfpm content type; "" for a plain file
}

// dir is a directory a package owns, with its owner and mode.
type dir struct {
	path  string
	mode  uint32
	owner string
	group string
}

// pkgSpec describes one package.
type pkgSpec struct {
	name        string
	summary     string
	description string
	binaries    []binary
	files       []file
	dirs        []dir
	// recommends, per format ("deb", "rpm"), since the distributions name
	// the same thing differently.
	recommends map[string][]string
	// sameVersion are packages this one depends on at exactly its own
	// version (a unit for a binary that another package ships).
	sameVersion []string
	// scripts are the maintainer scripts, relative to packaging/; nil for
	// none.
	scripts *scriptSet
}

// scriptSet is a package's maintainer scripts, shared by deb and rpm.
type scriptSet struct {
	preinstall, postinstall, preremove, postremove string
}

const serverFiles = `.TP
.I /etc/postern/postern.toml
the configuration, shared by postern-signer and postern-bastion
.TP
.I /var/lib/postern/signer
CA private keys and the signer's audit log (postern:postern, 0700)
.TP
.I /var/lib/postern/bastion
host key and certificate, user CA public key, spool and audit log
.TP
.I /var/lib/postern/recordings
session recordings when no S3 bucket is configured
`

const forwarderFiles = `.TP
.I /etc/postern/kube-forwarder.toml
the configuration of postern\-kube\-forwarder under systemd
.TP
.I /var/lib/postern/kube-forwarder
the forwarder's host key and certificate, the host CA public key, its audit log
`

// packages are the packages make package builds. Everything they contain
// is declared here; tests in packaging/pkgtest check the result.
var packages = []pkgSpec{
	{
		name:    "postern-server",
		summary: "postern access plane: SSH certificate authority and bastion",
		description: `postern-server runs the server side of postern, an SSH-native access
plane: postern-signer, a certificate authority that signs people in
through OIDC single sign-on and issues short-lived OpenSSH certificates,
and postern-bastion, the SSH entry point that authorizes every hop,
records sessions and writes a tamper-evident audit log.
The services are installed but neither enabled nor started.`,
		binaries: []binary{
			{name: "postern-signer", pkg: "./signer", manSection: 8,
				commands: []string{"init", "host-cert", "check-config"}, files: serverFiles},
			{name: "postern-bastion", pkg: "./bastion", manSection: 8, files: serverFiles},
		},
		files: []file{
			{src: "files/postern.toml", dst: "/etc/postern/postern.toml", mode: 0o640, owner: "root", group: "postern", kind: "config|noreplace"},
			{src: "systemd/postern-signer.service", dst: "/usr/lib/systemd/system/postern-signer.service", mode: 0o644, owner: "root", group: "root"},
			{src: "systemd/postern-bastion.service", dst: "/usr/lib/systemd/system/postern-bastion.service", mode: 0o644, owner: "root", group: "root"},
			{src: "systemd/port22.conf", dst: "/usr/share/doc/postern-server/examples/port22.conf", mode: 0o644, owner: "root", group: "root"},
		},
		dirs: []dir{
			{path: "/etc/postern", mode: 0o750, owner: "root", group: "postern"},
			{path: "/var/lib/postern", mode: 0o750, owner: "postern", group: "postern"},
			{path: "/var/lib/postern/signer", mode: 0o700, owner: "postern", group: "postern"},
			{path: "/var/lib/postern/bastion", mode: 0o750, owner: "postern", group: "postern"},
			{path: "/var/lib/postern/recordings", mode: 0o750, owner: "postern", group: "postern"},
		},
		recommends: map[string][]string{
			// ssh-keygen makes the bastion's host key (docs/deploy.md).
			"deb": {"openssh-client"},
			"rpm": {"openssh-clients"},
		},
		scripts: &scriptSet{
			preinstall: "scripts/preinstall.sh", postinstall: "scripts/postinstall.sh",
			preremove: "scripts/preremove.sh", postremove: "scripts/postremove.sh",
		},
	},
	{
		name:    "postern",
		summary: "postern access plane: the command-line client",
		description: `postern signs you in through your company's single sign-on and puts a
short-lived OpenSSH certificate into your ssh-agent; from then on plain
ssh, scp, sftp and rsync reach the nodes through the postern bastion.`,
		binaries: []binary{
			{name: "postern", pkg: "./agent-helper", manSection: 1,
				commands: []string{"login", "status", "logout", "config"}},
			{name: "kube-exec", pkg: "./kube-exec", manSection: 1,
				commands: []string{"proxy"}},
		},
		recommends: map[string][]string{
			"deb": {"openssh-client"},
			"rpm": {"openssh-clients"},
		},
	},
	{
		// The forwarder: its own binary (kube-exec forwarder runs it where
		// both are installed) and the service. It shares the postern user
		// and the preinstall that creates it with postern-server, so both
		// may be installed on one host, in either order.
		name:    "postern-kube-forwarder",
		summary: "postern access plane: the kube forwarder service",
		description: `postern-kube-forwarder runs the kube forwarder as a systemd service:
inside a Kubernetes cluster's network it dials out to the postern
bastions and carries people's kubectl requests to the API server, as
them (impersonation), writing one audit event per request.
The service is installed but neither enabled nor started.`,
		binaries: []binary{
			{name: "postern-kube-forwarder", pkg: "./kube-exec/cmd/postern-kube-forwarder", manSection: 8, files: forwarderFiles},
		},
		files: []file{
			{src: "files/kube-forwarder.toml", dst: "/etc/postern/kube-forwarder.toml", mode: 0o640, owner: "root", group: "postern", kind: "config|noreplace"},
			{src: "systemd/postern-kube-forwarder.service", dst: "/usr/lib/systemd/system/postern-kube-forwarder.service", mode: 0o644, owner: "root", group: "root"},
		},
		dirs: []dir{
			// /etc/postern and /var/lib/postern exactly as postern-server
			// has them: a directory two packages own must agree.
			{path: "/etc/postern", mode: 0o750, owner: "root", group: "postern"},
			{path: "/var/lib/postern", mode: 0o750, owner: "postern", group: "postern"},
			{path: "/var/lib/postern/kube-forwarder", mode: 0o700, owner: "postern", group: "postern"},
		},
		scripts: &scriptSet{
			preinstall: "scripts/preinstall.sh", postinstall: "scripts/kube-forwarder/postinstall.sh",
			preremove: "scripts/kube-forwarder/preremove.sh", postremove: "scripts/kube-forwarder/postremove.sh",
		},
	},
}
