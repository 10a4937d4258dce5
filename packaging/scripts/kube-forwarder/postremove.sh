#!/bin/sh
# postern-kube-forwarder postremove (deb postrm, rpm %postun).
#
# /var/lib/postern/kube-forwarder is never deleted, not even on purge: it
# holds the forwarder's host key and its audit log. The postern user and
# group are kept too (postern-server may use them, and files they own
# remain). Remove them by hand once the audit log is archived:
#   rm -rf /var/lib/postern/kube-forwarder
set -e

case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
	;;
esac

case "$1" in
purge | 0)
	if [ -d /var/lib/postern/kube-forwarder ]; then
		echo "postern-kube-forwarder: kept /var/lib/postern/kube-forwarder (host key, audit log); remove it by hand once archived"
	fi
	;;
esac

exit 0
