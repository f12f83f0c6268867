#!/usr/bin/env bash
# Everything fumidai needs on a fresh Debian 12 machine, as root:
# Debian packages, the Python venv (.venv) with pinned requirements, podman's
# project-local configuration and the locally built host image.
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> setup: %s\n' "$*"; }

apt_packages=(
  python3 python3-venv python3-pip make git openssh-client curl ca-certificates
  # netavark explicitly: without recommends apt would pick the CNI plugins,
  # and the lab's and scenarios' networks are written for netavark.
  podman runc netavark aardvark-dns catatonit slirp4netns uidmap fuse-overlayfs mmdebstrap
  iproute2 iptables conntrack
  # the bastion's audit_vm scenario boots a virtual machine (scripts/build-vm-image.sh)
  qemu-system-x86
)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: Python >= 3.11 is needed on the controller ($python is older)" >&2
  exit 1
fi
stamp=.venv/.requirements.sha256
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "creating .venv with requirements.txt"
  "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi

# The checkout is the collection fumidai.vpc, used in place: .collections/ansible_collections/fumidai/vpc
# holds one symlink per top-level entry of the collection (not one link to the checkout itself,
# which would put a loop under the checkout for every tool that walks it). ansible.cfg's
# collections_path names .collections; the .pth file gives the venv's Python the same import root
# (ansible_collections.fumidai.vpc...) plus the checkout for the dev packages lab and tests.
step "linking the checkout as the collection fumidai.vpc"
collection=.collections/ansible_collections/fumidai/vpc
mkdir -p "$collection"
entries="$(.venv/bin/python -m tests.support.collection entries)"
# Only what changed: a run (make test calls setup before each stage) never leaves the links missing.
for link in "$collection"/*; do
  [ -L "$link" ] || continue
  printf '%s\n' $entries | grep -qxF "$(basename "$link")" || rm -f "$link"
done
for entry in $entries; do
  [ "$(readlink "$collection/$entry" 2>/dev/null)" = "../../../../$entry" ] || ln -sfn "../../../../$entry" "$collection/$entry"
done
site_packages="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n' "$PWD" "$PWD/.collections" > "$site_packages/fumidai-checkout.pth"

# ansible-navigator refuses podman without a POSIX message queue filesystem mount point.
mkdir -p /dev/mqueue

step "building the host image (cached)"
scripts/build-image.sh
step "done"
