#!/usr/bin/env bash
# The secrets docker-compose.yml reads, made once before the first `docker-compose up`:
#
#   deploy/make-secrets.sh                     # create whatever is missing; rebuild the ACL
#   deploy/make-secrets.sh --rotate product    # a new token for product; the old one still works
#   deploy/make-secrets.sh --finish-rotation   # retire the old tokens once the services use the new
#   deploy/make-secrets.sh --rotate admin      # a new admin token (restart the registry after)
#
# Idempotent: an existing secret is never changed (only --rotate does that), so it is safe to run
# again; the ACL is rebuilt from the token files each time.
# The folder is SECRETS_DIR (default ./secrets beside docker-compose.yml; a relative path is taken
# from there, as Compose takes it). It is mode 0700, so no other user of this machine can read
# anything in it. In it:
#
#   registry_admin_token             admin token: any registry write (operators, not services)
#   <service>_registry_token         scoped token of product, order and gateway (and any other
#                                    service given to --rotate): writes only that service
#   registry-acl/registry_acl.json   the registry's ACL: the SHA-256 of each scoped token (no
#                                    secret); rebuilt from the token files on every run
#   postgres_password                password of the bundled PostgreSQL's `app` user
#   database_url                     postgres://app:<password>@postgres:5432/app for product and
#                                    order; write your own first to use an external PostgreSQL
#
# Files the services read are 0644: Compose mounts a secret file with its owner and mode as they are
# here (`uid`/`gid`/`mode` apply to swarm only), and the services run as the image's `node` user
# (uid 1000), not as this file's owner. The 0700 folder is what keeps them private. The password
# file is read only by PostgreSQL's entry point, as root, so it stays 0600.
set -euo pipefail
umask 077
export LC_ALL=C

usage() {
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${SECRETS_DIR:-./secrets}
case $dir in /*) ;; *) dir=$root/${dir#./} ;; esac

rotate=()
finish=false
while [[ $# -gt 0 ]]; do
  case $1 in
    --rotate)
      [[ $# -ge 2 ]] || usage
      rotate+=("$2")
      shift 2
      ;;
    --finish-rotation)
      finish=true
      shift
      ;;
    -h | --help) usage 0 ;;
    *)
      echo "unknown argument: $1" >&2
      usage
      ;;
  esac
done

SERVICE_NAME='^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$'
for name in ${rotate[@]+"${rotate[@]}"}; do
  [[ $name == admin || $name =~ $SERVICE_NAME ]] || {
    echo "--rotate $name: expected admin or a service name (lower case letters, digits, . _ -)" >&2
    exit 2
  }
done

random_hex() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 32
  else
    od -vAn -N32 -tx1 /dev/urandom | tr -d ' \n'
    echo
  fi
}

sha256_of_file() {
  # The digest of the token itself: the file's trailing newline is not part of it.
  local token
  token=$(head -n 1 "$1")
  if command -v sha256sum >/dev/null 2>&1; then
    printf %s "$token" | sha256sum | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    printf %s "$token" | shasum -a 256 | cut -d ' ' -f 1
  else
    printf %s "$token" | openssl dgst -sha256 -r | cut -d ' ' -f 1
  fi
}

# Writes stdin to $1 with mode $2, atomically (a new file renamed over the old one).
write_file() {
  local tmp
  tmp=$(mktemp "$(dirname "$1")/.tmp.XXXXXX")
  cat >"$tmp"
  chmod "$2" "$tmp"
  mv -f "$tmp" "$1"
}

# Stops the run when $1 exists but does not hold a token the services would accept.
check_token() {
  local token
  token=$(head -n 1 "$1")
  if ! [[ $token =~ ^[!-~]+$ && ${#token} -ge 16 && ${#token} -le 4096 ]]; then
    echo "$1 does not hold a token of 16-4096 visible ASCII characters; delete it to make a new one" >&2
    exit 1
  fi
}

created=()
# Creates $1 (mode $2) holding a new random token, unless it exists.
ensure_token() {
  # Docker and podman make an empty folder where a file to mount is missing.
  if [[ -d $1 ]] && rmdir "$1" 2>/dev/null; then echo "removed the empty folder $1 (made by a container engine)"; fi
  if [[ -e $1 ]]; then
    check_token "$1"
  else
    random_hex | write_file "$1" "$2"
    created+=("${1#"$dir"/}")
  fi
}

# A broken file stops the run before anything is changed.
for file in "$dir"/registry_admin_token "$dir"/*_registry_token "$dir"/*_registry_token.previous "$dir"/postgres_password; do
  if [[ -f $file ]]; then check_token "$file"; fi
done

mkdir -p "$dir/registry-acl"
chmod 700 "$dir"
chmod 755 "$dir/registry-acl"

for name in ${rotate[@]+"${rotate[@]}"}; do
  if [[ $name == admin ]]; then
    random_hex | write_file "$dir/registry_admin_token" 644
    echo "new admin token in $dir/registry_admin_token: restart the registry (docker-compose restart registry)"
    continue
  fi
  file=$dir/${name}_registry_token
  if [[ -e $file.previous ]]; then
    echo "$name is being rotated already: run --finish-rotation once its containers use the new token" >&2
    exit 1
  fi
  if [[ -e $file ]]; then
    mv "$file" "$file.previous"
    echo "rotating $name: its old token stays valid until --finish-rotation"
  fi
  random_hex | write_file "$file" 644
  echo "new token for $name in $file"
done

if $finish; then
  for previous in "$dir"/*_registry_token.previous; do
    [[ -e $previous ]] || continue
    rm -f "$previous"
    echo "retired the old token of $(basename "$previous" _registry_token.previous)"
  done
fi

ensure_token "$dir/registry_admin_token" 644
for service in product order gateway; do ensure_token "$dir/${service}_registry_token" 644; done

password_created=false
[[ -f $dir/postgres_password ]] || password_created=true
ensure_token "$dir/postgres_password" 600
if [[ -d $dir/database_url ]] && rmdir "$dir/database_url" 2>/dev/null; then echo "removed the empty folder $dir/database_url (made by a container engine)"; fi
if [[ ! -e $dir/database_url ]]; then
  printf 'postgres://app:%s@postgres:5432/app\n' "$(head -n 1 "$dir/postgres_password")" | write_file "$dir/database_url" 644
  created+=(database_url)
elif $password_created; then
  echo "note: database_url exists and was left as it is; it must hold the password in postgres_password if it names the bundled PostgreSQL" >&2
fi

# The ACL: one entry per scoped token (the old one too while a rotation is under way), named after
# its service. Instances belong to the name, not to one token: during a rotation the old and the
# new token both own the instances either registered, so replicas can move over one by one.
entries=()
for file in "$dir"/*_registry_token "$dir"/*_registry_token.previous; do
  [[ -e $file ]] || continue
  service=$(basename "$file")
  service=${service%.previous}
  service=${service%_registry_token}
  [[ $service =~ $SERVICE_NAME ]] || {
    echo "$file: $service is not a service name; rename or delete the file" >&2
    exit 1
  }
  ensure_token "$file" 644
  digest=$(sha256_of_file "$file")
  entries+=("    {\"name\": \"$service\", \"sha256\": \"$digest\", \"services\": [\"$service\"]}")
done
acl=$dir/registry-acl/registry_acl.json
content=$(
  echo '{'
  echo '  "tokens": ['
  for i in "${!entries[@]}"; do
    if ((i + 1 < ${#entries[@]})); then echo "${entries[$i]},"; else echo "${entries[$i]}"; fi
  done
  echo '  ]'
  echo '}'
)
# Rewritten only when it changes: the registry re-reads it whenever it does.
if [[ ! -e $acl ]]; then
  printf '%s\n' "$content" | write_file "$acl" 644
  created+=(registry-acl/registry_acl.json)
elif [[ $(cat "$acl") != "$content" ]]; then
  printf '%s\n' "$content" | write_file "$acl" 644
  echo "updated $acl: the registry re-reads it at once"
fi

# Last: docker-compose.yml names this file (env_file), so `up` refuses to start without it.
marker=$dir/made-by-deploy-make-secrets.env
if [[ ! -f $marker ]]; then
  printf '%s\n' '# Made by deploy/make-secrets.sh once every secret beside it was; docker-compose.yml' \
    '# refuses to start without it. It sets no variable.' | write_file "$marker" 644
fi

if [[ ${#created[@]} -gt 0 ]]; then
  echo "created in $dir: ${created[*]}"
else
  echo "every secret is in $dir already"
fi
