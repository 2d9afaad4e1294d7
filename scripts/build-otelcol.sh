#!/usr/bin/env bash
# Builds the OpenTelemetry Collector of docs/otelcol-builder.yaml (the filelog receiver and the
# otlphttp exporter) with the Collector's own builder (ocb), from the Go module proxy: no registry
# here serves a Collector binary. Cached outside the repository by the recipe's content; prints
# the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILDER_VERSION=${OTELCOL_BUILDER_VERSION:-0.165.0}
recipe=docs/otelcol-builder.yaml
cache=${BKLOG_CACHE_DIR:-$HOME/.cache/bklog-deploy}
mkdir -p "$cache"
exec 9>"$cache/otelcol.lock"
flock 9
key=$( (echo "$BUILDER_VERSION"; cat "$recipe") | sha256sum | cut -c1-16)
out="$cache/otelcol-$key/otelcol-bklog"
if [[ -x $out ]] && "$out" --version >/dev/null 2>&1; then
  echo "$out"; exit 0
fi
command -v go >/dev/null || { echo "build-otelcol: 'go' not on PATH" >&2; exit 1; }
work="$cache/otelcol-$key"
mkdir -p "$work"
cp "$recipe" "$work/builder.yaml"
cd "$work"
GOBIN="$work/bin" go install "go.opentelemetry.io/collector/cmd/builder@v$BUILDER_VERSION" >&2
CGO_ENABLED=0 "$work/bin/builder" --config builder.yaml >&2
mv dist/otelcol-bklog "$out"
"$out" --version >&2
echo "$out"
