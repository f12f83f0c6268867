#!/usr/bin/env bash
# Build fumidai's execution environment (execution-environment.yml) with ansible-builder and podman,
# entirely from local inputs (no container registry is reachable):
#   1. the base image localhost/fumidai-ee-base: Debian 12 from mmdebstrap (as scripts/build-image.sh
#      builds the lab's host image) with python3, python3-pip and openssh-client;
#   2. the collection tarball: `ansible-galaxy collection build` of this checkout, into .cache/ee/;
#   3. a wheelhouse of the pinned Python packages (pip download), mounted into the build so that pip in
#      the image installs from it alone;
#   4. `ansible-builder build` -> localhost/fumidai-ee:<collection version> (and :<input hash>).
# Cached: each step is skipped when its inputs did not change (the base when its recipe did not, the
# image when the recipe, this script, the base, the pins and the collection's files did not).
# Usage: scripts/build-ee.sh            (FUMIDAI_EE_IMAGE overrides the repository name)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
. "${here}/podman-env.sh"
cd "$root"

python=.venv/bin/python
[ -x "$python" ] || { echo "build-ee: .venv is missing: run scripts/setup.sh first" >&2; exit 1; }
export PATH="${root}/.venv/bin:${PATH}"

image="${FUMIDAI_EE_IMAGE:-localhost/fumidai-ee}"
base_image="localhost/fumidai-ee-base"
mirror="${FUMIDAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work=.cache/ee
mkdir -p "$work"
# One build at a time (a build started early in the background, then the tests' own call, which waits
# for it and finds the image cached).
exec 9>"$work/.lock"
flock 9

# ansible-navigator refuses podman without /dev/mqueue/ (ansible-runner runs the EE with --ipc=host);
# systemd mounts it on a usual Debian machine, a container-based one may lack it.
if [ ! -d /dev/mqueue ] && [ "$(id -u)" -eq 0 ]; then
  mkdir -p /dev/mqueue
fi

# ----------------------------------------------------------------------------- 1. the base image
# Everything ansible-runner and ansible-builder's in-image scripts need that pip does not bring:
# python3 with pip and venv (the assemble script makes a venv), ssh, ssh-agent and ssh-add (openssh-client:
# Ansible's connections, the bastion hop, AWX's machine credential), CA certificates for the AWS API.
build_base() {
  local tag=$1
  local packages=(python3 python3-pip python3-venv openssh-client ca-certificates netbase)
  mmdebstrap --variant=minbase --mode=root --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook=': > "$1/etc/machine-id"' \
    bookworm - "${mirror}" "${mirror%/debian}/debian-security bookworm-security main" \
    | podman import --change 'CMD ["/bin/bash"]' - "${base_image}:${tag}"
}
base_tag="$(declare -f build_base | sha256sum | cut -c1-12)"
if podman image exists "${base_image}:${base_tag}"; then
  echo "base image ${base_image}:${base_tag} is up to date"
else
  echo "building ${base_image}:${base_tag} (mmdebstrap, about a minute)"
  started=$SECONDS
  build_base "$base_tag"
  echo "built ${base_image}:${base_tag} in $((SECONDS - started))s"
fi
podman tag "${base_image}:${base_tag}" "${base_image}:latest"
base_id="$(podman image inspect --format '{{.Id}}' "${base_image}:${base_tag}")"

# ----------------------------------------------------------------------------- 2. the collection tarball
# Built outside the checkout root; a fixed name so that execution-environment.yml can name it.
rm -rf "$work/collection"
ansible-galaxy collection build --force --output-path "$work/collection" . >/dev/null
tarballs=("$work"/collection/*.tar.gz)
[ "${#tarballs[@]}" -eq 1 ] || { echo "build-ee: expected one collection tarball, got: ${tarballs[*]}" >&2; exit 1; }
mv "${tarballs[0]}" "$work/collection/fumidai-vpc.tar.gz"
# FILES.json holds every file's sha256: the collection's content, whatever the tarball's timestamps.
collection_sum="$(tar -xzOf "$work/collection/fumidai-vpc.tar.gz" MANIFEST.json FILES.json | sha256sum | cut -c1-64)"
version="$("$python" -c 'import json, sys; print(json.load(sys.stdin)["collection_info"]["version"])' \
  < <(tar -xzOf "$work/collection/fumidai-vpc.tar.gz" MANIFEST.json))"

# ----------------------------------------------------------------------------- 3. the wheelhouse
# What pip installs in the image, read from execution-environment.yml, plus what ansible-builder's
# builder stage installs for itself (bindep; pyyaml and packaging come with ansible-core and ansible-runner).
requirements="$("$python" - <<'PY'
import yaml
ee = yaml.safe_load(open("execution-environment.yml"))
deps = ee["dependencies"]
pins = [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"], *deps["python"],
        ee["options"]["container_init"]["package_pip"], "bindep==2.14.0"]
print("\n".join(pins))
PY
)"
wheelhouse="$work/wheels/$(printf '%s\n' "$requirements" | sha256sum | cut -c1-12)"
if [ ! -f "$wheelhouse/.complete" ]; then
  echo "downloading the pinned Python packages into ${wheelhouse}"
  rm -rf "$wheelhouse"
  mkdir -p "$wheelhouse"
  printf '%s\n' "$requirements" > "$wheelhouse/requirements.txt"
  # Wheels only: the base image has no compilers, and Debian 12's Python 3.11 on this machine's
  # architecture is the image's own.
  pip download -qq --only-binary=:all: --dest "$wheelhouse" -r "$wheelhouse/requirements.txt"
  touch "$wheelhouse/.complete"
fi

# ----------------------------------------------------------------------------- 4. the image
key="$({ cat "${here}/build-ee.sh" execution-environment.yml; echo "$base_id" "$collection_sum" "$requirements";
         ansible-builder --version; } | sha256sum | cut -c1-12)"
if podman image exists "${image}:${key}"; then
  podman tag "${image}:${key}" "${image}:${version}"
  echo "image ${image}:${version} (${key}) is up to date"
  exit 0
fi
echo "building ${image}:${version} (${key}) with ansible-builder"
started=$SECONDS
rm -rf "$work/context"
ansible-builder build --file execution-environment.yml --context "$work/context" \
  --container-runtime podman --tag "${image}:${key}" --tag "${image}:${version}" \
  --extra-build-cli-args "--volume ${root}/${wheelhouse}:/wheelhouse:ro" --verbosity 2
echo "built ${image}:${version} (${key}) in $((SECONDS - started))s"
