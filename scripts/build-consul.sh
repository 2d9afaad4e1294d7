#!/usr/bin/env bash
# Builds the Consul agent the tests install on their hosts (the consul role's air-gapped mode).
# No registry here serves a Consul binary, but the Go module proxy serves its source. v1.16.1 is
# the last MPL-2.0 line (1.17+ are under the Business Source License): the build checks the
# LICENSE of every hashicorp/consul module it compiles and refuses anything else.
# Cached by version outside the repository; prints the binary's path.
set -euo pipefail
CONSUL_VERSION=${CONSUL_VERSION:-1.16.1}
cache=${BKLOG_CACHE_DIR:-$HOME/.cache/bklog-deploy}
# One build at a time (the test suite's background build and a test that needs it may both ask).
mkdir -p "$cache"
exec 9>"$cache/consul.lock"
flock 9
out="$cache/consul-$CONSUL_VERSION/consul"
if [[ -x $out ]] && "$out" version | grep -q "Consul v$CONSUL_VERSION"; then
  echo "$out"; exit 0
fi
command -v go >/dev/null || { echo "build-consul: 'go' not on PATH (Go 1.20+ needed to build Consul)" >&2; exit 1; }

work="$cache/consul-build-$CONSUL_VERSION"
mkdir -p "$work" "$(dirname "$out")"
cd "$work"
[[ -f go.mod ]] || go mod init consulbuild >&2
# As a dependency, Consul's own replace/exclude lines are ignored: repeat the excludes here.
grep -q 'go-msgpack v1.1.5' go.mod || printf 'exclude (\n\tgithub.com/hashicorp/go-msgpack v1.1.5\n\tgithub.com/hashicorp/go-msgpack v1.1.6\n)\n' >> go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/hashicorp/consul"
GO
# The checksum database served here answers 404 for these two modules (seen 2026-11-29:
# "reading https://proxy.golang.org/sumdb/sum.golang.org/lookup/...@v0.4.1: 404 Not Found"):
# their go.sum lines come from the proxy's download alone.
export GONOSUMDB=github.com/hashicorp/consul/envoyextensions,github.com/hashicorp/hcp-sdk-go
GOFLAGS=-mod=mod go get "github.com/hashicorp/consul@v$CONSUL_VERSION" >&2

# Every hashicorp/consul module in the build must be MPL-2.0.
# (Modules of the packages actually compiled: `go list -m all` would also ask for modules that are
# only in the graph, and the proxy here refuses some of them, e.g. inet.af/netaddr: 403.)
for mod in $(go list -mod=mod -deps -f '{{with .Module}}{{.Path}}@{{.Version}}{{end}}' github.com/hashicorp/consul \
             | sort -u | grep -E '^github.com/hashicorp/consul(/[a-z-]+)?@'); do
  dir=$(go mod download -json "$mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  if ! grep -q "Mozilla Public License" "$dir/LICENSE"; then
    echo "build-consul: $mod is not under the Mozilla Public License (see $dir/LICENSE): refusing to build" >&2
    exit 1
  fi
  echo "build-consul: $mod MPL-2.0" >&2
done

CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags="-s -w -checklinkname=0" -o "$out.tmp" github.com/hashicorp/consul >&2
mv "$out.tmp" "$out"
"$out" version >&2
echo "$out"
