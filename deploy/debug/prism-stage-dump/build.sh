#!/usr/bin/env bash
# A debugging Prism: Beam's Prism at $PRISM_VERSION plus a goroutine that appends, every 10 s, each
# stage's transforms, input/output watermarks, holds, in-progress bundles and per-key heads of its
# pending data/timer heap to $PRISM_DUMP_FILE, with Go's pprof on $PRISM_PPROF_ADDR (host:port) when
# set (DESIGN 7, "Seeing inside Prism"). Never the cached
# engine: pass it to one run with --prism_location=$ENGINES_CACHE/prism-debug-$PRISM_VERSION/prism.
# Needs Go >= $GO_MIN_VERSION on PATH (or GO=/path/to/go); `make engine-prism` fetches one into
# $ENGINES_CACHE/go-$GO_VERSION when the machine has none.
. "$(dirname "${BASH_SOURCE[0]}")/../../fetch/common.sh"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO="${GO:-$(command -v go || ls "$ENGINES_CACHE"/go-"$GO_VERSION"/bin/go 2>/dev/null || true)}"
[ -x "$GO" ] || { echo "no go: put Go >= $GO_MIN_VERSION on PATH or set GO=/path/to/go" >&2; exit 1; }
OUT="$ENGINES_CACHE/prism-debug-$PRISM_VERSION"
WORK="$OUT/.build"
rm -rf "$OUT"; mkdir -p "$WORK"
export GOTOOLCHAIN=local GOFLAGS=-modcacherw GOPROXY=https://proxy.golang.org CGO_ENABLED=0 \
       GOPATH="$WORK/gopath" GOMODCACHE="$WORK/gopath/pkg/mod" GOCACHE="$WORK/gocache"
SRC="$("$GO" mod download -json "github.com/apache/beam/sdks/v2@v$PRISM_VERSION" \
       | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
cp -r "$SRC" "$WORK/sdk" && chmod -R u+w "$WORK/sdk"
cp "$HERE/debugdump.go" "$WORK/sdk/go/pkg/beam/runners/prism/internal/engine/"
(cd "$WORK/sdk" && patch -p1 < "$HERE/stage-names.patch" && "$GO" build -o "$OUT/prism" ./go/cmd/prism)
rm -rf "$WORK"
echo "debug prism: $OUT/prism (run with PRISM_DUMP_FILE=/tmp/stages.txt)"
