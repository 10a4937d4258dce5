#!/bin/sh
# postern-server postinstall (deb postinst, rpm %post): make systemd see the
# new or changed units. Nothing is enabled, started or restarted: the CA keys
# and the configuration must be in place first (see docs/deploy.md).
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	for unit in postern-signer.service postern-bastion.service; do
		if systemctl is-active --quiet "$unit" 2>/dev/null; then
			echo "postern-server: $unit is running the old version; restart it when ready: systemctl restart $unit"
		fi
	done
fi

exit 0
