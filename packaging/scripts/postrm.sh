#!/bin/sh
# postrm of the warden package. remove keeps /var/lib/warden (the Raft
# state and broker data) and the configuration; purge deletes both. The
# system user warden stays: files elsewhere may still belong to it.
set -e

case "$1" in
purge)
	rm -f /etc/systemd/system/multi-user.target.wants/warden-agent.service \
		/etc/systemd/system/multi-user.target.wants/warden-broker.service
	rm -rf /var/lib/warden
	;;
esac

case "$1" in
remove | purge)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
esac

exit 0
