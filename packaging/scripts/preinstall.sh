#!/bin/sh
# postern-server and postern-kube-forwarder preinstall (deb preinst, rpm
# %pre), the same script in both: create the postern system group and user
# before the package's files are unpacked, so that /etc/postern and
# /var/lib/postern get their recorded owners. Idempotent, so either package
# may come first; works with useradd (Debian, Ubuntu, Fedora, RHEL, SUSE) or
# Debian's adduser.
set -e

name=postern
home=/var/lib/postern

nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/sbin/nologin
[ -x "$nologin" ] || nologin=/bin/false

if ! getent group "$name" >/dev/null 2>&1; then
	if command -v groupadd >/dev/null 2>&1; then
		groupadd --system "$name"
	elif command -v addgroup >/dev/null 2>&1; then
		addgroup --system "$name"
	else
		echo "postern: error: neither groupadd nor addgroup found; cannot create group $name" >&2
		exit 1
	fi
fi

if ! getent passwd "$name" >/dev/null 2>&1; then
	if command -v useradd >/dev/null 2>&1; then
		useradd --system --gid "$name" --home-dir "$home" --no-create-home \
			--shell "$nologin" --comment "postern access plane" "$name"
	elif command -v adduser >/dev/null 2>&1; then
		adduser --system --ingroup "$name" --home "$home" --no-create-home \
			--shell "$nologin" --gecos "postern access plane" "$name"
	else
		echo "postern: error: neither useradd nor adduser found; cannot create user $name" >&2
		exit 1
	fi
fi

exit 0
