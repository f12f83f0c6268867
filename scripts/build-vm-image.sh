#!/usr/bin/env bash
# Build the local "AMI" as a virtual machine: a Debian 12 root filesystem
# image (ext4) with its own kernel and initrd, booted by QEMU where a
# container cannot do the job (the bastion's kernel audit rules: the kernel
# accepts audit netlink only from the initial PID namespace).
#
# Same idea as scripts/build-image.sh (the container image, left as it is):
# mmdebstrap, the roles' packages baked in (the VM gets no route to a mirror),
# services the roles switch on left off. What a VM needs on top: a kernel
# (linux-image-cloud-amd64, extracted with its initrd for qemu -kernel/-initrd),
# a static address on QEMU's user network, the controller's key from the
# kernel command line (fumidai.admin_key=<base64>, as cloud-init takes the
# instance's key pair) and the host keys printed to the serial console at
# boot (as cloud-init does on EC2) for the caller to pin. The host keys are
# made here, not at boot: without hardware virtualisation (QEMU's TCG) a
# 4096-bit RSA key takes the guest a minute.
#
# Output: .cache/vm-image/<hash>/{vmlinuz,initrd.img,rootfs.ext4}, the hash
# being this script's (rebuilt only when it changes); the last line printed
# is that directory. Boot the root image read-only (qemu snapshot=on): every
# QEMU process starts from the same first-boot state.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$(dirname "${here}")/.cache/vm-image"
hash="$(sha256sum "$0" | cut -c1-12)"
out="${cache}/${hash}"
mirror="${FUMIDAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

mkdir -p "${cache}"
# One build at a time (two scenarios, or CI and a developer, asking at once).
exec 9>"${cache}/.lock"
flock 9

if [ -s "${out}/rootfs.ext4" ] && [ -s "${out}/vmlinuz" ] && [ -s "${out}/initrd.img" ]; then
  echo "VM image ${hash} is up to date" >&2
  echo "${out}"
  exit 0
fi

packages=(
  # what an EC2 Debian AMI has, with its kernel
  linux-image-cloud-amd64 initramfs-tools
  systemd systemd-sysv dbus udev openssh-server sudo python3 python3-apt
  ca-certificates iproute2 procps less
  # what roles/bastion installs (and roles/security_upgrades, which it includes)
  fail2ban python3-systemd unattended-upgrades apt-listchanges auditd iptables
)

work="$(mktemp -d "${cache}/build.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
echo "building VM image ${hash} (mmdebstrap with a kernel, about a minute)" >&2
# The initrd holds only the root disk's drivers (ext4 is built into the kernel): a small
# initrd boots in seconds under TCG. Services the roles switch on stay off until they do;
# the console gettys are masked (nobody logs in there, the console carries the host keys).
mmdebstrap --variant=minbase --mode=root --format=directory \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"' \
  --essential-hook='echo "MODULES=list" > "$1/etc/initramfs-tools/conf.d/fumidai-modules"' \
  --essential-hook='mkdir -p "$1/usr/share/initramfs-tools/modules.d"' \
  --essential-hook='printf "virtio_pci\nvirtio_blk\n" > "$1/usr/share/initramfs-tools/modules.d/fumidai-vm"' \
  --customize-hook='echo fumidai-vm > "$1/etc/hostname"' \
  --customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 fumidai-vm\n" > "$1/etc/hosts"' \
  --customize-hook='echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$1/etc/fstab"' \
  --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --groups sudo admin' \
  --customize-hook='echo "admin ALL=(ALL) NOPASSWD:ALL" > "$1/etc/sudoers.d/90-cloud-init-users"' \
  --customize-hook='chmod 0440 "$1/etc/sudoers.d/90-cloud-init-users"' \
  --customize-hook='printf "[Match]\nName=en* eth*\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n" > "$1/etc/systemd/network/10-qemu-user.network"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd' \
  --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service systemd-resolved.service' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*_key*' \
  --customize-hook='ssh-keygen -q -t ed25519 -N "" -C "" -f "$1/etc/ssh/ssh_host_ed25519_key"' \
  --customize-hook='ssh-keygen -q -t rsa -b 4096 -N "" -C "" -f "$1/etc/ssh/ssh_host_rsa_key"' \
  --customize-hook='chroot "$1" systemctl enable ssh' \
  --customize-hook='chroot "$1" systemctl disable fail2ban auditd unattended-upgrades apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service || true' \
  --customize-hook='chroot "$1" systemctl mask getty@tty1.service serial-getty@ttyS0.service e2scrub_all.timer fstrim.timer dpkg-db-backup.timer' \
  --customize-hook='install -m 0755 /dev/stdin "$1/usr/local/sbin/fumidai-admin-key" <<"SCRIPT"
#!/bin/sh
# What cloud-init does with the instance'"'"'s key pair: authorise the controller'"'"'s public key for admin,
# here taken from the kernel command line (fumidai.admin_key=<base64 of the authorized_keys line>).
set -eu
key=""
for word in $(cat /proc/cmdline); do
  case "$word" in fumidai.admin_key=*) key="${word#fumidai.admin_key=}" ;; esac
done
[ -n "$key" ] || exit 0
install -d -m 0700 -o admin -g admin /home/admin/.ssh
printf "%s" "$key" | base64 -d > /home/admin/.ssh/authorized_keys
chown admin:admin /home/admin/.ssh/authorized_keys
chmod 0600 /home/admin/.ssh/authorized_keys
SCRIPT' \
  --customize-hook='printf "[Unit]\nDescription=Authorise the controller key for admin (as cloud-init does)\nBefore=ssh.service\nConditionPathExists=!/home/admin/.ssh/authorized_keys\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/fumidai-admin-key\n[Install]\nWantedBy=multi-user.target\n" > "$1/etc/systemd/system/fumidai-admin-key.service"' \
  --customize-hook='chroot "$1" systemctl enable fumidai-admin-key.service' \
  --customize-hook='install -m 0755 /dev/stdin "$1/usr/local/sbin/fumidai-keys-to-console" <<"SCRIPT"
#!/bin/sh
# What cloud-init does at the end of an instance'"'"'s first boot (keys_to_console): print the SSH host
# keys to the serial console, which QEMU writes to a file the caller reads to pin them.
{
echo "-----BEGIN SSH HOST KEY KEYS-----"
for f in /etc/ssh/ssh_host_*key.pub; do [ -f "$f" ] && cat "$f"; done
echo "-----END SSH HOST KEY KEYS-----"
} | logger -p user.info --stderr -t ec2 2>/dev/console
SCRIPT' \
  --customize-hook='printf "[Unit]\nDescription=Print the SSH host keys to the console (as cloud-init does)\nAfter=ssh.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/sbin/fumidai-keys-to-console\n[Install]\nWantedBy=multi-user.target\n" > "$1/etc/systemd/system/fumidai-keys-to-console.service"' \
  --customize-hook='chroot "$1" systemctl enable fumidai-keys-to-console.service' \
  --customize-hook='cat /proc/sys/kernel/random/uuid | tr -d - > "$1/etc/machine-id"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages' \
  bookworm "${work}/root" "${mirror}" "${mirror%/debian}/debian-security bookworm-security main"

mkdir -p "${work}/out"
cp "$(ls "${work}"/root/boot/vmlinuz-* | sort -V | tail -n 1)" "${work}/out/vmlinuz"
cp "$(ls "${work}"/root/boot/initrd.img-* | sort -V | tail -n 1)" "${work}/out/initrd.img"
# Room for what the roles write: the size of the tree plus 512 MiB (a sparse file).
size_mib=$(( $(du -sm "${work}/root" | cut -f1) + 512 ))
mkfs.ext4 -q -F -L fumidai-root -E root_owner=0:0 -d "${work}/root" "${work}/out/rootfs.ext4" "${size_mib}M"

# Keep only this build: an older image is never used again.
find "${cache}" -mindepth 1 -maxdepth 1 -type d -not -name "$(basename "${work}")" -exec rm -rf {} +
mv "${work}/out" "${out}"
echo "built VM image ${hash}" >&2
echo "${out}"
