#!/usr/bin/env bash
# Installs the Debian packages that building the image or testing the packages needs, only
# those that are missing (apt-get, as root). Usage: packaging/deps.sh image|test
set -euo pipefail

image=(mmdebstrap e2fsprogs dosfstools mtools fdisk qemu-utils systemd-boot-efi)
test=("${image[@]}" lintian systemd-container qemu-system-x86 ovmf openssh-client curl
	wireguard-tools wireguard-go iproute2 iputils-ping)
case ${1:-} in
image) want=("${image[@]}") ;;
test) want=("${test[@]}") ;;
*)
	echo "usage: packaging/deps.sh image|test" >&2
	exit 2
	;;
esac

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: install them as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
