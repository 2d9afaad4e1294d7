#!/usr/bin/env bash
# Builds the Debian test-host images (systemd as PID 1) for molecule and the local sandbox, from
# debootstrap: no container registry is needed. An image is rebuilt only when this recipe changes:
# its tag is a hash of the recipe (RECIPE_VERSION and the package list below).
#   scripts/build-images.sh [bookworm] [trixie]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
suites=("$@")
((${#suites[@]})) || suites=(bookworm trixie)

# Base system, plus the distribution packages the roles install, so a converge does not wait on
# the mirror each time (the roles still declare and check them). openssh-server: the scenarios
# log in over SSH, as operators do (and 3x faster per task than `podman exec`).
RECIPE_VERSION=3
INCLUDE=python3,python3-venv,systemd,systemd-sysv,dbus,iproute2,sudo,procps,ca-certificates,curl,nginx,supervisor,redis-server,logrotate,python3-apt,postgresql,python3-psycopg2,unzip,openssh-server
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
recipe_hash=$(printf '%s\n' "$RECIPE_VERSION" "$INCLUDE" | sha256sum | cut -c1-12)
cache=${BKLOG_CACHE:-$HOME/.cache/bklog-deploy}/images
mkdir -p "$cache"

for suite in "${suites[@]}"; do
  image="localhost/bklog-test-$suite:$recipe_hash"
  if podman image exists "$image"; then
    echo "image $image: cached"
    continue
  fi
  tarball="$cache/$suite-$recipe_hash.tar"
  if [[ ! -f $tarball ]]; then
    echo "image $image: debootstrap $suite (a minute or two)"
    root=$(mktemp -d /tmp/bklog-rootfs.XXXXXX)
    debootstrap --variant=minbase --include="$INCLUDE" "$suite" "$root" "$MIRROR" >"$cache/$suite.log" 2>&1 \
      || { tail -20 "$cache/$suite.log"; exit 1; }
    # Services stay as the distribution enables them; nothing listens outside the container.
    rm -f "$root/etc/machine-id" && touch "$root/etc/machine-id"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    # Empty lists must look stale, or apt's cache_valid_time trusts them for a day and a package
    # not in the image is "not available".
    touch -d @0 "$root/var/lib/apt/lists"
    tar -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$root"
  fi
  podman import -q --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' "$tarball" "$image" >/dev/null
  podman tag "$image" "localhost/bklog-test-$suite:latest"
  echo "image $image: built"
done
