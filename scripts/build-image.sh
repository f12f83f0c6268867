#!/usr/bin/env bash
# Build the local "AMI": a systemd Debian 12 image that stands in for an EC2
# instance in Molecule scenarios and in the lab. No registry is needed:
# mmdebstrap writes a root filesystem, podman imports it.
#
# The packages the roles install are baked in (a "golden AMI"), because lab
# hosts in private subnets reach only the lab's own internet, not a mirror.
# The image is rebuilt only when this script changes (its hash is the tag).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "${here}/podman-env.sh"

image="${FUMIDAI_IMAGE:-localhost/fumidai-debian12}"
tag="$(sha256sum "$0" | cut -c1-12)"
mirror="${FUMIDAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if podman image exists "${image}:${tag}"; then
  podman tag "${image}:${tag}" "${image}:latest"
  echo "image ${image}:${tag} is up to date"
  exit 0
fi

packages=(
  # what an EC2 Debian AMI has
  systemd systemd-sysv dbus openssh-server sudo python3 python3-apt
  ca-certificates iproute2 iputils-ping procps less curl netcat-openbsd
  # what the roles install (bastion, nat_instance, apache)
  fail2ban python3-systemd unattended-upgrades apt-listchanges auditd
  python3-boto3  # nat_instance: the standby's failover watchdog (ReplaceRoute)
  iptables iptables-persistent netfilter-persistent conntrack
  apache2
  # what the lab's own service containers run (ALB, internet server)
  haproxy
)

echo "building ${image}:${tag} (mmdebstrap, about a minute)"
# iptables-persistent asks debconf questions during install: preseed them.
mmdebstrap --variant=minbase --mode=root --format=tar \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --essential-hook='echo "iptables-persistent iptables-persistent/autosave_v4 boolean false" | chroot "$1" debconf-set-selections' \
  --essential-hook='echo "iptables-persistent iptables-persistent/autosave_v6 boolean false" | chroot "$1" debconf-set-selections' \
  --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --groups sudo admin' \
  --customize-hook='echo "admin ALL=(ALL) NOPASSWD:ALL" > "$1/etc/sudoers.d/90-cloud-init-users"' \
  --customize-hook='chmod 0440 "$1/etc/sudoers.d/90-cloud-init-users"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*_key*' \
  --customize-hook='chroot "$1" systemctl enable ssh' \
  --customize-hook='chroot "$1" systemctl disable apache2 haproxy fail2ban auditd unattended-upgrades apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service || true' \
  --customize-hook='chroot "$1" systemctl mask systemd-resolved.service getty@tty1.service console-getty.service || true' \
  --customize-hook='printf "[Unit]\nDescription=Generate missing SSH host keys at boot (as cloud-init does on first boot)\nBefore=ssh.service\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n[Install]\nWantedBy=multi-user.target\n" > "$1/etc/systemd/system/ssh-hostkeys.service"' \
  --customize-hook='chroot "$1" systemctl enable ssh-hostkeys.service' \
  --customize-hook='install -m 0755 /dev/stdin "$1/usr/local/sbin/fumidai-keys-to-console" <<"SCRIPT"
#!/bin/sh
# What cloud-init does at the end of an instance'"'"'s first boot (keys_to_console, tools/write-ssh-key-fingerprints):
# print the SSH host key fingerprints and public keys to the serial console, through logger, so each line
# carries a syslog prefix. EC2 returns that console through GetConsoleOutput; the lab publishes it to its
# local AWS API, and provisioning pins the keys from there.
{
echo
echo "#############################################################"
echo "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
for f in /etc/ssh/ssh_host_*key.pub; do [ -f "$f" ] && ssh-keygen -l -f "$f"; done
echo "-----END SSH HOST KEY FINGERPRINTS-----"
echo "#############################################################"
echo "-----BEGIN SSH HOST KEY KEYS-----"
for f in /etc/ssh/ssh_host_*key.pub; do [ -f "$f" ] && cat "$f"; done
echo "-----END SSH HOST KEY KEYS-----"
} | logger -p user.info --stderr -t ec2 2>/dev/console
mkdir -p /var/lib/fumidai && touch /var/lib/fumidai/keys-printed
SCRIPT' \
  --customize-hook='printf "[Unit]\nDescription=Print the SSH host keys to the console once per instance (as cloud-init does)\nAfter=ssh-hostkeys.service\nConditionPathExists=!/var/lib/fumidai/keys-printed\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/sbin/fumidai-keys-to-console\n[Install]\nWantedBy=multi-user.target\n" > "$1/etc/systemd/system/fumidai-keys-to-console.service"' \
  --customize-hook='chroot "$1" systemctl enable fumidai-keys-to-console.service' \
  --customize-hook=': > "$1/etc/machine-id"' \
  bookworm - "${mirror}" "${mirror%/debian}/debian-security bookworm-security main" \
  | podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "${image}:${tag}"
podman tag "${image}:${tag}" "${image}:latest"
echo "built ${image}:${tag}"
