#!/usr/bin/env bash
# Builds Filebeat OSS (the shipper upstream BK LOG's own agent derives from) for the shipper tests:
# no registry here serves its binary, but the Go module proxy serves its source by version. Its
# go.mod has `replace` directives, which apply only when building inside the module itself: the
# downloaded module is copied to a work folder and built there (`go build ./filebeat`).
# Cached by version outside the repository; prints the binary's path. About 7 minutes cold.
set -euo pipefail
FILEBEAT_VERSION=${FILEBEAT_VERSION:-7.17.29}
cache=${BKLOG_CACHE_DIR:-$HOME/.cache/bklog-deploy}
# One build at a time (the test suite's background build and a test that needs it may both ask).
mkdir -p "$cache"
exec 9>"$cache/filebeat.lock"
flock 9
out="$cache/filebeat-$FILEBEAT_VERSION/filebeat"
if [[ -x $out ]] && "$out" version 2>/dev/null | grep -q "filebeat version $FILEBEAT_VERSION"; then
  echo "$out"; exit 0
fi
command -v go >/dev/null || { echo "build-filebeat: 'go' not on PATH" >&2; exit 1; }
src=$(go mod download -json "github.com/elastic/beats/v7@v$FILEBEAT_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
work="$cache/filebeat-build-$FILEBEAT_VERSION"
if [[ ! -f $work/go.mod ]]; then
  rm -rf "$work" && mkdir -p "$(dirname "$work")"
  cp -r "$src" "$work" && chmod -R u+w "$work"
fi
mkdir -p "$(dirname "$out")"
cd "$work"
# The OSS build (no x-pack): the flavour an operator builds from the public source.
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out.part" ./filebeat >&2
mv "$out.part" "$out"
"$out" version >&2
echo "$out"
