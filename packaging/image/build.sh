#!/usr/bin/env bash
# Builds dist/popgate-<version>-amd64.qcow2 (make image): Debian 12 from Debian's packages
# with mmdebstrap, the popgate .deb installed, systemd-boot on a GPT disk with an EFI system
# partition, serial console, cloud-init (NoCloud) for first-boot settings. No loop devices,
# no mounts outside mmdebstrap's own chroot, no Docker.
#
# Nothing secret is baked in: /etc/machine-id is empty, there are no SSH host keys (cloud-init
# or ssh-hostkeys.service create them on first boot), root has no password, and popgate
# creates its keys and first admin secret when it first starts.
#
# Usage: packaging/image/build.sh DEB
# Environment: POPGATE_VERSION (default: version.sh), DIST (default: dist),
#   MIRROR (default: http://deb.debian.org/debian), ROOT_SIZE (default: 2G; cloud-init grows
#   the root file system to the disk's size on boot, so `qemu-img resize` is enough).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
deb=${1:?usage: packaging/image/build.sh DEB}
deb=$(realpath "$deb")
DIST=${DIST:-dist}
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
POPGATE_VERSION=${POPGATE_VERSION:-$(packaging/version.sh)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT_SIZE=${ROOT_SIZE:-2G}
out=$DIST/popgate-$POPGATE_VERSION-amd64.qcow2

for tool in mmdebstrap mkfs.ext4 mkfs.vfat mcopy mmd sfdisk qemu-img; do
	if ! command -v "$tool" >/dev/null; then
		echo "image: $tool is missing: apt-get install mmdebstrap e2fsprogs dosfstools mtools fdisk qemu-utils" >&2
		exit 1
	fi
done
bootefi=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
if [ ! -f "$bootefi" ]; then
	echo "image: $bootefi is missing: apt-get install systemd-boot-efi" >&2
	exit 1
fi

work=$DIST/build/image
rm -rf "$work"
mkdir -p "$work"
rootfs=$work/rootfs
trap 'rm -rf "$rootfs"' EXIT

# The appliance: the cloud kernel (virtio, no hardware drivers), systemd with networkd and
# resolved, cloud-init for the NoCloud seed, OpenSSH for the operator, iptables for kernel
# exit mode and wireguard-tools for diagnosis. Documentation and translations are left out.
packages=(
	linux-image-cloud-amd64 systemd-sysv udev dbus systemd-resolved systemd-timesyncd
	iproute2 iptables wireguard-tools openssh-server sudo cloud-init cloud-guest-utils
	ca-certificates less procps
)
mmdebstrap --variant=minbase --mode=root --format=directory \
	--include="$(
		IFS=,
		echo "${packages[*]}"
	)" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "MODULES=most\nCOMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/popgate.conf"' \
	--customize-hook="copy-in $deb /tmp" \
	--customize-hook='chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/'"$(basename "$deb")" \
	--customize-hook='rm -f "$1"/tmp/*.deb' \
	bookworm "$rootfs" "$MIRROR"

# Files of the image: network, cloud-init, SSH host keys on first boot, popgate after cloud-init.
cp -a packaging/image/overlay/. "$rootfs/"
chown -R root:root "$rootfs/etc/systemd/network" "$rootfs/etc/systemd/system" "$rootfs/etc/cloud/cloud.cfg.d"
ln -sf ../run/systemd/resolve/resolv.conf "$rootfs/etc/resolv.conf"
for unit in systemd-networkd.service systemd-resolved.service ssh-hostkeys.service; do
	systemctl --root="$rootfs" enable "$unit" >/dev/null 2>&1
done
systemctl --root="$rootfs" is-enabled popgate.service >/dev/null

echo popgate >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpopgate\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"

# No secrets and no identity: every VM makes its own on first boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id" "$rootfs"/etc/ssh/ssh_host_* "$rootfs/var/lib/systemd/random-seed"
rm -rf "$rootfs/var/lib/popgate" "$rootfs/var/lib/cloud" "$rootfs"/var/log/*.log "$rootfs/var/cache/debconf"/*-old
if grep -q '^root:[^*!]' "$rootfs/etc/shadow"; then
	echo "image: root has a password in /etc/shadow; refusing to ship it" >&2
	exit 1
fi

# Disk: GPT with an EFI system partition (systemd-boot, kernel, initrd) and the root file
# system, both built as files and copied in place.
kernel=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$rootfs/boot/initrd.img-${kernel##*/vmlinuz-}
root_partuuid=$(cat /proc/sys/kernel/random/uuid)
esp_mib=128
root_bytes=$(numfmt --from=iec "$ROOT_SIZE")
root_mib=$((root_bytes / 1048576))

printf 'UUID=%s / ext4 rw,errors=remount-ro 0 1\n' "$(cat /proc/sys/kernel/random/uuid | tee "$work/root-fs-uuid")" >"$rootfs/etc/fstab"

mkfs.ext4 -q -F -L popgate-root -U "$(cat "$work/root-fs-uuid")" -d "$rootfs" "$work/root.img" "${root_mib}M"

esp=$work/esp.img
rm -f "$esp"
mkfs.vfat -C -F 32 -n POPGATE-ESP "$esp" $((esp_mib * 1024)) >/dev/null
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$esp" "$bootefi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$kernel" ::/vmlinuz
mcopy -i "$esp" "$initrd" ::/initrd.img
printf 'default popgate.conf\ntimeout 0\nconsole-mode keep\n' >"$work/loader.conf"
printf 'title popgate %s\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=PARTUUID=%s rw console=tty0 console=ttyS0,115200n8\n' \
	"$POPGATE_VERSION" "$root_partuuid" >"$work/popgate.conf"
mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$esp" "$work/popgate.conf" ::/loader/entries/popgate.conf

disk=$work/disk.raw
total_mib=$((1 + esp_mib + root_mib + 1))
truncate -s "${total_mib}M" "$disk"
sfdisk -q "$disk" <<EOF
label: gpt
start=1MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=$((1 + esp_mib))MiB, size=${root_mib}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_partuuid, name=root
EOF
dd if="$esp" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none

rm -f "$out"
qemu-img convert -c -O qcow2 "$disk" "$out"
rm -f "$disk" "$work/root.img" "$esp"
echo "$out"
