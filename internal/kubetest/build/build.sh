#!/usr/bin/env bash
# build.sh — build kube-apiserver, kubectl and etcd, at the versions pinned
# in this directory's go.mod, and testkubelet (cmd/testkubelet: a kubelet's
# exec, attach and port-forward endpoints for tests) into a cache directory
# shared by every checkout on the machine:
#
#   ${POSTERN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/postern}/kube-VERSION/bin
#
# A stamp file there records what the binaries were built from (versions, Go
# toolchain, a hash of go.mod, go.sum, this script and cmd/); when it matches,
# nothing is built. Progress goes to stderr; the last line of stdout is the
# binary directory. Concurrent runs wait for each other (flock).
#
# A cold build compiles about 2,150 packages: 10 to 15 minutes on two cores,
# with a peak of about 2.4 GB of memory (linking kube-apiserver). Go's build
# cache makes a rebuild after a stamp change a relink of about 10 seconds.
#
# Environment: POSTERN_CACHE (see above), GO (the go command), KUBE_BUILD_P
# (packages compiled in parallel, default: number of CPUs), KUBE_BUILD_NICE
# (niceness of the build, default 10).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
GO=${GO:-go}
export GOWORK=off GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

say() { printf 'kube-bins: %s\n' "$*" >&2; }
die() { printf 'kube-bins: error: %s\n' "$*" >&2; exit 1; }

command -v "$GO" >/dev/null || die "go not found; hint: install Go from https://go.dev/dl/"
kube=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' go.mod)
etcd=$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ { print $2; exit }' go.mod)
[[ $kube =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "cannot read the k8s.io/kubernetes version from $here/go.mod"
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
[[ -n $etcd ]] || die "cannot read the etcd version from $here/go.mod"

base=${POSTERN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/postern}
dir=$base/kube-$kube
bin=$dir/bin
mkdir -p "$bin"
sources=(go.mod go.sum build.sh)
mapfile -t -O 3 sources < <(find cmd -type f -name '*.go' | LC_ALL=C sort)
stamp=$(printf 'kubernetes %s\netcd %s\n%s\nsources %s\n' "$kube" "$etcd" \
	"$("$GO" version)" "$(for f in "${sources[@]}"; do printf '%s\n' "$f"; cat "$f"; done | sha256sum | cut -d' ' -f1)")

fresh() {
	[[ -f $bin/.stamp && $(<"$bin/.stamp") == "$stamp" ]] &&
		[[ -x $bin/kube-apiserver && -x $bin/kubectl && -x $bin/etcd && -x $bin/testkubelet ]]
}

if ! fresh; then
	exec 9>"$dir/.lock"
	if ! flock -n 9; then
		say "waiting for another build of $dir"
		flock 9
	fi
fi
if fresh; then
	say "up to date: kubernetes $kube, etcd $etcd in $bin"
	echo "$bin"
	exit 0
fi
rm -f "$bin/.stamp"

# The same -X flags as Kubernetes' hack/lib/version.sh, so that `kubectl
# version` and the API server's /version report the release.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

nice=${KUBE_BUILD_NICE:-10}
par=${KUBE_BUILD_P:-$(nproc 2>/dev/null || echo 2)}

# gobuild NAME PACKAGE: build one binary, printing a line every 100 packages
# compiled (go build -v names each package it compiles rather than takes
# from the build cache); anything else go prints, errors included, passes
# through.
gobuild() {
	local name=$1 pkg=$2 start=$SECONDS
	say "building $name ($pkg)"
	nice -n "$nice" "$GO" build -trimpath -p "$par" -v -ldflags "$ldflags" -o "$bin/$name.new" "$pkg" 2>&1 |
		awk -v name="$name" -v t0="$(date +%s)" '
			/^[^ #]+$/ { n++; if (n % 100 == 0) { printf "kube-bins:   %s: %d packages compiled, %ds\n", name, n, systime() - t0 > "/dev/stderr"; fflush("/dev/stderr") } next }
			{ print > "/dev/stderr" }
			END { if (n) printf "kube-bins:   %s: %d packages compiled\n", name, n > "/dev/stderr" }'
	mv "$bin/$name.new" "$bin/$name"
	say "built $name in $((SECONDS - start))s"
}

say "building kubernetes $kube and etcd $etcd into $bin (a cold build takes 10 to 15 minutes)"
total=$SECONDS
gobuild kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
gobuild kubectl k8s.io/kubernetes/cmd/kubectl
gobuild etcd go.etcd.io/etcd/server/v3
gobuild testkubelet ./cmd/testkubelet
printf '%s\n' "$stamp" >"$bin/.stamp"
say "done in $((SECONDS - total))s"
echo "$bin"
