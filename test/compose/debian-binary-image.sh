# Shared by build-etcd-image.sh and build-prometheus-image.sh (sourced, not run): the steps of an
# image made of a Go program from Debian's packages and the C library it loads, with no container
# registry and no debootstrap root.

# fetch_debs WORK PACKAGE...: the packages as the archive has them (not whatever this machine has
# installed), unpacked into WORK/unpacked; the package lists are refreshed once if they are
# missing or out of date.
fetch_debs() {
  local work=$1
  shift
  mkdir -p "$work/debs" "$work/unpacked"
  (cd "$work/debs" && apt-get download -qq "$@" >"$work/apt.log" 2>&1) || {
    echo "apt-get download failed; apt-get update, then again"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$work/apt.log" 2>&1 || true
    (cd "$work/debs" && apt-get download -qq "$@" >>"$work/apt.log" 2>&1) || {
      tail -n 30 "$work/apt.log" >&2
      exit 1
    }
  }
  local deb
  for deb in "$work"/debs/*.deb; do
    echo "unpacking $(dpkg-deb --field "$deb" Package) $(dpkg-deb --field "$deb" Version)"
    dpkg-deb --extract "$deb" "$work/unpacked"
  done
}

# merged_usr ROOT: the merged /usr layout Debian bookworm has (/bin is usr/bin, and so on), and a
# world-writable /tmp.
merged_usr() {
  local root=$1
  mkdir -p "$root"/{usr/bin,usr/lib/x86_64-linux-gnu,usr/lib64,etc,tmp}
  ln -s usr/bin "$root/bin"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
  chmod 1777 "$root/tmp"
}

# copy_libc ROOT BINARY...: every shared library the binaries (paths inside ROOT) load, at the path
# the loader looks for it. Anything beyond libc means the package changed, and the recipe with it.
copy_libc() {
  local root=$1
  shift
  local libs lib bin
  libs=$(for bin in "$@"; do
    ldd "$root$bin" | awk '/=> \//{print $3} /^\s*\/[^ ]+ \(/{print $1}'
  done | sort -u)
  for lib in $libs; do
    case $(basename "$lib") in
      libc.so.* | ld-linux-*.so.*) ;;
      *) echo "$* need $lib, which this recipe does not expect" >&2; exit 1 ;;
    esac
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# go_resolver ROOT: Go's own resolver (no NSS modules in the image) reads /etc/hosts, then the
# network's DNS, which answers the Compose service names.
go_resolver() {
  cat >"$1/etc/nsswitch.conf" <<'NSS'
hosts: files dns
NSS
}
