#!/usr/bin/env bash
# Builds an etcd image without any container registry: etcd and etcdctl from Debian's etcd-server
# and etcd-client packages (fetched with this machine's apt, from its own Debian archive), the C
# library they load, and an unprivileged `etcd` user owning /var/lib/etcd; imported with
# `podman import`.
#
#   build-etcd-image.sh TAG
#
# No debootstrap root, unlike the PostgreSQL image: Debian's etcd is a Go program that needs
# nothing from the system but libc (the script checks that with ldd), so the image holds just
# that, as build-node-base.sh does for Node. It stands in for quay.io/coreos/etcd (ETCD_IMAGE in
# deploy/docker-compose.etcd.yml) and behaves like it where the Compose file relies on it: the
# command is etcd itself, configured by ETCD_* variables, and etcd as PID 1 exits 0 on SIGTERM.
set -euo pipefail
# shellcheck source=debian-binary-image.sh
source "$(dirname "$0")/debian-binary-image.sh"

tag=${1:?usage: build-etcd-image.sh TAG}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/etcd-image.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/root
packages=(etcd-server etcd-client)

fetch_debs "$work" "${packages[@]}"
version=$(dpkg-deb --field "$work"/debs/etcd-server_*.deb Version)

merged_usr "$root"
mkdir -p "$root/var/lib/etcd"
for bin in etcd etcdctl; do
  install -m 755 "$work/unpacked/usr/bin/$bin" "$root/usr/bin/$bin"
done
copy_libc "$root" /usr/bin/etcd /usr/bin/etcdctl

# etcd runs as its own user (the uid Debian's package would give it is not fixed; 999 is).
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
etcd:x:999:999:etcd:/var/lib/etcd:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
etcd:x:999:
nogroup:x:65534:
GROUP
go_resolver "$root"
# A new named volume mounted here takes this folder's owner and mode, so etcd can make its data
# directory (0700) in it without running as root.
chown 999:999 "$root/var/lib/etcd"
chmod 700 "$root/var/lib/etcd"

tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'USER etcd' \
  --change 'WORKDIR /var/lib/etcd' \
  --change 'CMD ["/usr/bin/etcd"]' \
  --change 'EXPOSE 2379' \
  --change 'EXPOSE 2380' \
  --change 'LABEL io.microservices-advanced.compose-test=etcd' \
  --message "etcd $version from Debian's etcd-server package, for the Compose test" \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "built $tag (etcd $version)"
