#!/usr/bin/env bash
# Builds a PostgreSQL 15 image without any container registry: a minimal Debian bookworm root made
# by debootstrap from this machine's own Debian mirror, Debian's postgresql-15 installed in it with
# apt, and test/compose/postgres-entrypoint.sh as its entry point; imported with `podman import`.
#
#   build-postgres-image.sh TAG MIRROR SOURCES_LIST
#
# MIRROR is the Debian archive URI for debootstrap; SOURCES_LIST a file with the apt sources
# (one-line format) for the root, so that security updates come from where the machine gets them.
set -euo pipefail

tag=${1:?usage: build-postgres-image.sh TAG MIRROR SOURCES_LIST}
mirror=${2:?mirror}
sources=${3:?sources.list file}
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d "${TMPDIR:-/var/tmp}/postgres-image.XXXXXX")
root=$work/root
cleanup() {
  # Never leave a mount behind inside the root before deleting it.
  if mountpoint -q "$root/proc" 2>/dev/null; then umount "$root/proc" || umount -l "$root/proc"; fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

install -m 644 "$sources" "$root/etc/apt/sources.list"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# Packages must not try to start services inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"

echo "apt-get install postgresql-15"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null' \
  >"$work/apt.log" 2>&1 || {
  tail -n 30 "$work/apt.log" >&2
  exit 1
}
umount "$root/proc"

# The package creates a cluster of its own; the entry point makes one in PGDATA instead.
rm -rf "$root/etc/postgresql/15/main" "$root/var/lib/postgresql/15"
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*
install -m 755 "$here/postgres-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
install -d -o "$(chroot "$root" id -u postgres)" -g "$(chroot "$root" id -g postgres)" -m 700 \
  "$root/var/lib/postgresql/data"

tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .
podman import --quiet \
  --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PGDATA=/var/lib/postgresql/data' \
  --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
  --change 'CMD ["postgres"]' \
  --change 'STOPSIGNAL SIGINT' \
  --change 'EXPOSE 5432' \
  --message "PostgreSQL 15 from Debian bookworm, for the Compose test" \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "built $tag"
