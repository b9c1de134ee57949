#!/bin/sh
# prerm of the warden package: on removal, stops the services so that no
# process outlives its binary. Upgrades leave them running.
set -e

case "$1" in
remove | deconfigure)
	if [ -d /run/systemd/system ]; then
		systemctl stop warden-agent.service warden-broker.service || true
	fi
	;;
esac

exit 0
