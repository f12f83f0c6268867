# shellcheck shell=bash
# Source this to point podman at the project's config and storage:
#   . scripts/podman-env.sh
# Storage lives under .cache/ so nothing outside the checkout is rewritten;
# the run root is per checkout too (two checkouts must not share its locks).
_fumidai_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FUMIDAI_ROOT="${_fumidai_root}"
export CONTAINERS_CONF="${_fumidai_root}/lab/podman/containers.conf"
export CONTAINERS_STORAGE_CONF="${_fumidai_root}/.cache/podman/storage.conf"
mkdir -p "${_fumidai_root}/.cache/podman"
if [ ! -f "${CONTAINERS_STORAGE_CONF}" ]; then
  cat > "${CONTAINERS_STORAGE_CONF}" <<CONF
[storage]
driver = "overlay"
graphroot = "${_fumidai_root}/.cache/podman/storage"
runroot = "/run/fumidai-podman-$(printf %s "${_fumidai_root}" | sha256sum | cut -c1-8)"
CONF
fi
unset _fumidai_root
