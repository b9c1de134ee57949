#!/bin/sh
# postinst of the warden package: makes systemd see the new units. It never
# enables, starts or restarts a service: the operator chooses when, and a
# cluster is upgraded one node at a time.
set -e

case "$1" in
configure)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	if [ -z "$2" ]; then
		echo "warden: installed, not started. Edit /etc/warden/agent.yaml (and broker.yaml), then:"
		echo "  systemctl enable --now warden-broker warden-agent"
	elif [ -d /run/systemd/system ]; then
		for unit in warden-agent warden-broker; do
			if systemctl is-active --quiet "$unit"; then
				echo "warden: $unit still runs the previous version; restart it when ready (one node at a time): systemctl restart $unit"
			fi
		done
	fi
	;;
esac

exit 0
