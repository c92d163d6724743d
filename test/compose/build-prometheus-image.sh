#!/usr/bin/env bash
# Builds a Prometheus image without any container registry: prometheus and promtool from Debian's
# prometheus package (fetched with this machine's apt, from its own Debian archive), its web
# templates and static files, the C library it loads, and /prometheus owned by `nobody`; imported
# with `podman import`.
#
#   build-prometheus-image.sh TAG
#
# Built the way build-etcd-image.sh builds etcd's: Debian's Prometheus is a Go program that needs
# nothing from the system but libc (the script checks that with ldd). It stands in for
# prom/prometheus (PROMETHEUS_IMAGE in docker-compose.yml) and behaves like it where the Compose
# file relies on it: the binary is at /bin/prometheus (here through the merged /usr), it runs as
# `nobody` with its data in /prometheus, and as PID 1 it exits 0 on SIGTERM.
set -euo pipefail
# shellcheck source=debian-binary-image.sh
source "$(dirname "$0")/debian-binary-image.sh"

tag=${1:?usage: build-prometheus-image.sh TAG}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/prometheus-image.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/root
packages=(prometheus)

fetch_debs "$work" "${packages[@]}"
version=$(dpkg-deb --field "$work"/debs/prometheus_*.deb Version)

# Merged /usr layout: /bin/prometheus, upstream's path, is the same file.
merged_usr "$root"
mkdir -p "$root"/{usr/share,etc/prometheus,prometheus}
for bin in prometheus promtool; do
  install -m 755 "$work/unpacked/usr/bin/$bin" "$root/usr/bin/$bin"
done
# The web UI's templates and static files, where Debian's build looks for them.
cp -a "$work/unpacked/usr/share/prometheus" "$root/usr/share/prometheus"
# Debian's sample configuration, so that the image starts without a mounted one.
install -m 644 "$work/unpacked/etc/prometheus/prometheus.yml" "$root/etc/prometheus/prometheus.yml"

copy_libc "$root" /usr/bin/prometheus /usr/bin/promtool

# Prometheus runs as nobody, as upstream's image does.
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
go_resolver "$root"
chown 65534:65534 "$root/prometheus"

tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'USER nobody' \
  --change 'WORKDIR /prometheus' \
  --change 'ENTRYPOINT ["/bin/prometheus"]' \
  --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
  --change 'EXPOSE 9090' \
  --change 'LABEL io.microservices-advanced.compose-test=prometheus' \
  --message "Prometheus $version from Debian's prometheus package, for the Compose test" \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "built $tag (prometheus $version)"
