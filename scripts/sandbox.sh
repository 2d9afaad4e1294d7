#!/usr/bin/env bash
# The main job: a local sandbox host (a podman container booting systemd, the same image the
# molecule tests use), deployed with playbooks/site.yml and inventories/local, then a demo index
# set and token, and the URL and curl commands to use it.
#   scripts/sandbox.sh up      (default)   create or update the sandbox
#   scripts/sandbox.sh down                remove it
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
NAME=bklog-sandbox
PORT=${BKLOG_SANDBOX_PORT:-8080}
# The sandbox's sshd on loopback: inventories/local reaches it there (BKLOG_SANDBOX_SSH_PORT too).
export BKLOG_SANDBOX_SSH_PORT=${BKLOG_SANDBOX_SSH_PORT:-2222}
KEY=$HOME/.cache/bklog-deploy/ssh/id_ed25519

if [[ ${1:-up} == down ]]; then
  podman rm -f "$NAME" >/dev/null 2>&1 && echo "sandbox removed" || echo "no sandbox to remove"
  exit 0
fi

scripts/build-images.sh bookworm
if ! podman container exists "$NAME"; then
  podman run -d --name "$NAME" --hostname "$NAME" --systemd=always -p "127.0.0.1:$PORT:80" \
    -p "127.0.0.1:$BKLOG_SANDBOX_SSH_PORT:22" localhost/bklog-test-bookworm:latest /sbin/init >/dev/null
fi
podman start "$NAME" >/dev/null
for _ in $(seq 60); do
  state=$(podman exec "$NAME" systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 1
done

if [[ -n $(podman port "$NAME" 22/tcp 2>/dev/null) ]]; then
  # The controller's key (shared with the molecule scenarios), authorised for root, and sshd up.
  [[ -f $KEY ]] || { mkdir -p "$(dirname "$KEY")" && ssh-keygen -q -t ed25519 -N "" -C bklog-deploy-tests -f "$KEY"; }
  podman exec -i "$NAME" sh -c 'install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && systemctl start ssh' < "$KEY.pub"
else
  # A sandbox made before it had SSH: kept as it is (its data too), reached through podman exec.
  echo "note: $NAME has no SSH port (made by an older sandbox.sh); deploying through podman exec (slower)." >&2
  echo "      'scripts/sandbox.sh down' and up again gives it one (its data is lost)." >&2
  export BKLOG_SANDBOX_CONNECTION=containers.podman.podman
fi

ansible-playbook -i inventories/local playbooks/site.yml

ingest_token=$(podman exec "$NAME" bklog create_index_set demo --if-missing 2>/dev/null || true)
if [[ -z $ingest_token ]]; then
  # The index set exists from an earlier run and its token is shown only once: make a new set.
  suffix=$(date +%s)
  ingest_token=$(podman exec "$NAME" bklog create_index_set "demo-$suffix")
  index_set="demo-$suffix"
else
  index_set=demo
fi
api_token=$(podman exec "$NAME" bklog create_api_token "sandbox-$(date +%s%N)")
url="http://127.0.0.1:$PORT"
curl -fsS "$url/readyz" >/dev/null

# The first admin, made by the role from the sandbox's vault.
admin_password=$(sed -n 's/^vault_bklog_admin_password: *//p' inventories/local/group_vars/all/vault.yml)

cat <<INFO

BK LOG sandbox is up at $url  (container $NAME, Debian 12, all-in-one)
  search page: open $url/ in a browser, log in as admin / $admin_password (the admin: $url/admin/)
  health:   curl $url/healthz ; curl $url/readyz ; curl $url/metrics
  ingest:   curl -X POST -H 'Authorization: Bearer $ingest_token' --data-binary \$'hello from the sandbox\\nsecond line' $url/api/v1/index_sets/$index_set/ingest
  search:   curl -H 'Authorization: Bearer $api_token' '$url/api/v1/index_sets/$index_set/search?q=hello'
  operator: podman exec -it $NAME bklog --help ; podman exec $NAME supervisorctl status
  remove:   scripts/sandbox.sh down
  (plain HTTP, on loopback only; fleets terminate TLS at nginx: nginx_tls_enabled, docs/security.md)
INFO
