#!/usr/bin/env bash
# Installs everything the tests, the sandbox and the benchmarks need on a fresh Debian 12 controller
# (run as root). Safe to re-run. Called by .ci/run and by the README's commands.
set -euo pipefail
cd "$(dirname "$0")/.."

# prometheus: its promtool checks and unit-tests the alert rules; prometheus-alertmanager: amtool
# checks the monitoring role's Alertmanager configuration. openssh-client: the scenarios
# log in to their hosts over SSH.
# golang-github-containernetworking-plugin-dnsname: hosts on one podman network find each other by
# name (podman 4.3 here uses CNI when netavark is not installed; without this plugin, no names).
# maven, openjdk-17-jre-headless: a real OpenSearch for the bulk endpoint's parity tests (tests/opensearch.py).
# patroni, python3-consul, redis-sentinel, prometheus-redis-exporter: the failover tests of the engine
# suite (tests/engine/test_failover.py), with the alert rules evaluated on what they export.
# rsyslog, rsyslog-elasticsearch: roles/log_agent's configuration run by the real rsyslogd
# (tests/engine/test_rsyslog.py).
# chromium, chromium-driver: the search page driven in a real browser (tests/browser).
APT_PACKAGES=(postgresql pgbouncer redis-server sqlite3 podman runc golang-github-containernetworking-plugin-dnsname debootstrap wrk curl ca-certificates prometheus prometheus-alertmanager openssh-client maven openjdk-17-jre-headless patroni python3-consul redis-sentinel prometheus-redis-exporter rsyslog rsyslog-elasticsearch chromium chromium-driver)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nginx's binary, unpacked from Debian's package rather than installed (no nginx service on the
# controller): the balancer's nginx configuration run for real (tests/engine/test_balancer.py).
nginx_dir=${HOME}/.cache/bklog-deploy/nginx
if [[ ! -x $nginx_dir/usr/sbin/nginx ]]; then
  rm -rf "$nginx_dir.tmp" && mkdir -p "$nginx_dir.tmp"
  # As root, apt downloads as root (no _apt sandbox): said here rather than warned about.
  (cd "$nginx_dir.tmp" && apt-get download -qq -o APT::Sandbox::User=root nginx && dpkg -x nginx_*.deb .)
  rm -rf "$nginx_dir" && mv "$nginx_dir.tmp" "$nginx_dir"
fi

# Podman as root on this machine family: crun fails (cgroups in hybrid mode) and raising
# ulimits fails (no CAP_SYS_RESOURCE); runc with limits at or below the host's hard limit works.
hard_nofile=$(ulimit -Hn)
[[ "$hard_nofile" == unlimited ]] && hard_nofile=65536
(( hard_nofile > 65536 )) && hard_nofile=65536
mkdir -p /etc/containers
conf=/etc/containers/containers.conf
want=$(printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n\n[engine]\nruntime = "runc"\n' "$hard_nofile" "$hard_nofile")
if [[ ! -f $conf ]] || [[ "$(cat "$conf")" != "$want" ]]; then
  printf '%s\n' "$want" > "$conf"
fi

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install -q --root-user-action=ignore uv
fi
uv sync --frozen -q
# Bytecode for the whole environment, written once here: uv installs none, and where the shell
# sets PYTHONDONTWRITEBYTECODE (these machines do) every ansible-playbook, pytest and molecule
# process would otherwise compile Ansible and its collections from source again: an
# ansible-playbook run took 6.8 s without it, 3.0 s with it (docs/benchmarks.md, 2026-12-05).
# compileall skips files whose bytecode is current, so a second setup costs seconds; a file that
# does not compile only loses its speed-up, so it does not stop the setup.
.venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true
echo "setup: done (uv $(uv --version | cut -d' ' -f2), podman $(podman --version | cut -d' ' -f3))"
