#!/bin/sh
# postern-kube-forwarder preremove (deb prerm, rpm %preun): on removal (not
# on upgrade) stop and disable the service. deb passes "remove"; rpm passes
# the number of versions left after the operation (0 on erase, 1 on upgrade).
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload disable --now postern-kube-forwarder.service >/dev/null 2>&1 || true
fi

exit 0
