#!/bin/sh
# postern-kube-forwarder postinstall (deb postinst, rpm %post): make systemd
# see the new or changed unit. Nothing is enabled, started or restarted: the
# configuration, kubeconfig and host certificate must be in place first (see
# docs/deploy.md).
set -e

unit=postern-kube-forwarder.service
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if systemctl is-active --quiet "$unit" 2>/dev/null; then
		echo "postern-kube-forwarder: $unit is running the old version; restart it when ready: systemctl restart $unit"
	fi
fi

exit 0
