#!/bin/sh
# preinst of the warden package: the system user and group warden exist
# before the files are unpacked, since /etc/warden belongs to group warden.
set -e

create_user() {
	if getent passwd warden >/dev/null 2>&1; then
		return 0
	fi
	if command -v adduser >/dev/null 2>&1; then
		if getent group warden >/dev/null 2>&1; then
			adduser --system --ingroup warden --no-create-home --home /var/lib/warden --quiet warden
		else
			adduser --system --group --no-create-home --home /var/lib/warden --quiet warden
		fi
	elif command -v useradd >/dev/null 2>&1; then
		getent group warden >/dev/null 2>&1 || groupadd --system warden
		useradd --system --gid warden --no-create-home --home-dir /var/lib/warden \
			--shell /usr/sbin/nologin --comment "Warden" warden
	else
		echo "warden: neither adduser nor useradd is installed; create the system user and group warden, then install again" >&2
		exit 1
	fi
}

case "$1" in
install | upgrade)
	create_user
	;;
esac

exit 0
