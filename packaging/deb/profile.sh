# /etc/profile.d/popgate.sh: point root's popgate admin commands at the packaged service.
#
# The admin commands look for the control socket in ./popgate-data unless --data-dir or
# POPGATE_DATA_DIR names another data dir. The packaged service keeps its data in
# /var/lib/popgate, reachable by root only, so root's login shells get that default.
# `sudo popgate ...` does not read this file: use `sudo popgate COMMAND --data-dir /var/lib/popgate ...`
# or `sudo -i`.
if [ "$(id -u)" = 0 ] && [ -z "${POPGATE_DATA_DIR-}" ] && [ -d /var/lib/popgate ]; then
	POPGATE_DATA_DIR=/var/lib/popgate
	export POPGATE_DATA_DIR
fi
