#!/usr/bin/env bash
# Builds a minimal Node.js base image without any container registry: the project's own Node 24
# binary (the `node` devDependency), the shared libraries it needs, npm, a POSIX shell and a `node`
# user (uid 1000, as in the official node images), imported with `podman import`.
#
#   build-node-base.sh TAG NODE_BINARY NPM_DIR
#
# The image stands in for node:24-bookworm-slim as the Dockerfile's NODE_IMAGE build argument.
set -euo pipefail

tag=${1:?usage: build-node-base.sh TAG NODE_BINARY NPM_DIR}
node_bin=$(readlink -f "${2:?node binary}")
npm_dir=$(readlink -f "${3:?npm folder}")
[[ -x $node_bin ]] || { echo "not an executable: $node_bin" >&2; exit 1; }
[[ -f $npm_dir/bin/npm-cli.js ]] || { echo "not an npm folder: $npm_dir" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/node-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# Merged /usr layout, as Debian bookworm has it.
mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib/x86_64-linux-gnu,usr/lib64,usr/local/bin,usr/local/lib/node_modules,etc,tmp,root,home/node,var/tmp}
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root"

install -m 755 "$node_bin" "$root/usr/local/bin/node"
install -m 755 "$(command -v dash)" "$root/usr/bin/dash"
ln -s dash "$root/usr/bin/sh"
# npm and tsc start with `#!/usr/bin/env node`.
install -m 755 "$(command -v env)" "$root/usr/bin/env"

# Every shared library the binaries load, at the path the loader looks for it.
for bin in "$node_bin" "$(command -v dash)" "$(command -v env)"; do
  ldd "$bin" | awk '/=> \//{print $3} /^\s*\/[^ ]+ \(/{print $1}'
done | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000::/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
node:x:1000:
nogroup:x:65534:
GROUP
cat >"$root/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS
chown 1000:1000 "$root/home/node"

# Trust what this machine trusts, so that `npm ci` in an image build reaches the npm registry the
# way the machine's own npm does (its egress may re-sign TLS with a local certificate authority).
ca_bundle=${NODE_EXTRA_CA_CERTS:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
ca_env=()
if [[ -f $ca_bundle ]]; then
  mkdir -p "$root/etc/ssl/certs"
  cp -L "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
  ca_env=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
fi

tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$("$node_bin" -p 'process.versions.node')" \
  "${ca_env[@]}" \
  --change 'ENV NPM_CONFIG_UPDATE_NOTIFIER=false' \
  --change 'LABEL io.microservices-advanced.compose-test=base' \
  --change 'CMD ["node"]' \
  --message "node $("$node_bin" -v) from the project's node devDependency" \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "built $tag"
