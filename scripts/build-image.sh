#!/usr/bin/env bash
# Builds BK LOG's container image from bklog/Dockerfile with podman. No registry is reachable here,
# so the base is the Debian 12 image scripts/build-images.sh makes from debootstrap, unless
# BASE_IMAGE names another (debian:bookworm-slim where a registry is reachable). The system CA
# bundle goes in as the build's `ca` secret (networks that intercept TLS to PyPI need it).
#   scripts/build-image.sh [TAG]        default: localhost/bklog:<version in pyproject.toml>
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
tag=${1:-localhost/bklog:$version}
if [[ -z ${BASE_IMAGE:-} ]]; then
  scripts/build-images.sh bookworm >/dev/null
  BASE_IMAGE=localhost/bklog-test-bookworm:latest
fi
secret=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  secret=(--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt)
fi
# --format docker: an OCI image would drop the HEALTHCHECK.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! podman build --format docker -f bklog/Dockerfile --build-arg BASE_IMAGE="$BASE_IMAGE" "${secret[@]}" \
    -t "$tag" . >"$log" 2>&1; then
  tail -n 30 "$log"
  echo "building $tag failed" >&2
  exit 1
fi
echo "$tag"
