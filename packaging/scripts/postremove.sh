#!/bin/sh
# postern-server postremove (deb postrm, rpm %postun).
#
# /var/lib/postern is never deleted, not even on purge: it holds the CA
# private keys (signer/user_ca, signer/host_ca), the audit logs and the
# recordings. Losing the CA keys means re-enrolling every node. The postern
# user and group are kept too, since files they own remain. Remove them by
# hand once the data is archived:
#   rm -rf /var/lib/postern && userdel postern
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
	if [ -d /var/lib/postern ]; then
		echo "postern-server: kept /var/lib/postern (CA private keys, audit logs, recordings) and the postern user; remove them by hand once archived"
	fi
	;;
esac

exit 0
