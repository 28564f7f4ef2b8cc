#!/usr/bin/env bash
# Beam's Prism runner, built from source at the SDK's version with `go install` from the Go
# module proxy (Beam's own Prism download comes from GitHub releases, which CI cannot reach).
# Result: $ENGINES_CACHE/prism-$PRISM_VERSION/bin/prism (runners/options.py passes it to Beam
# as --prism_location). Needs Go >= $GO_MIN_VERSION; a machine without one (or with Debian's
# older Go) gets the toolchain $GO_VERSION from the module proxy too, unpacked into the cache.
# GOPATH, GOMODCACHE and GOCACHE stay inside the cache and are removed after the build, so
# nothing leaks into ~/go or ~/.cache and the cache keeps only the binary.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ "$PRISM_VERSION" != "$BEAM_VERSION" ]; then
  echo "deploy/versions.env: PRISM_VERSION=$PRISM_VERSION must equal BEAM_VERSION=$BEAM_VERSION" >&2
  exit 1
fi
PRISM_DIR="$ENGINES_CACHE/prism-$PRISM_VERSION"
[ -f "$PRISM_DIR/.complete" ] && { echo "prism $PRISM_VERSION: $PRISM_DIR/bin/prism (cached)"; exit 0; }

# `version_at_least HAVE NEED`: dotted versions compared numerically (sort -V).
version_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# Prints the path of a go command that is new enough, fetching the toolchain if need be.
ensure_go() {
  if command -v go >/dev/null 2>&1; then
    local have
    # `go env GOVERSION` exists since Go 1.16; older ones print nothing and are fetched over.
    have="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//')" || have=""
    if [ -n "$have" ] && version_at_least "$have" "$GO_MIN_VERSION"; then
      command -v go; return 0
    fi
    echo "go ${have:-unknown} is older than $GO_MIN_VERSION: fetching go$GO_VERSION" >&2
  fi
  local arch
  case "$(uname -m)" in
    x86_64|amd64) arch=amd64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) echo "no Go toolchain for $(uname -m)" >&2; exit 1 ;;
  esac
  local root="$ENGINES_CACHE/go-$GO_VERSION"
  if [ ! -f "$root/.complete" ]; then
    rm -rf "$root"; mkdir -p "$root"
    # The Go module proxy serves each released toolchain as the module golang.org/toolchain
    # (what GOTOOLCHAIN=goX.Y.Z downloads); the zip holds golang.org/toolchain@<v>/{bin,pkg,src}.
    local url="https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$arch.zip"
    echo "fetching $url" >&2
    curl -fsSL --retry 3 -o "$root/toolchain.zip" "$url"
    # Python's zipfile (always here) instead of unzip (not on a minimal Debian); it drops the
    # executable bits, so they are restored from each entry's Unix mode.
    python3 - "$root/toolchain.zip" "$root" <<'PY'
import os, sys, zipfile
archive, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as zf:
    for info in zf.infolist():
        # Entries are golang.org/toolchain@<version>/...: drop that module prefix.
        parts = info.filename.split("/")
        at = next((i for i, part in enumerate(parts) if "@" in part), None)
        name = "/".join(parts[at + 1:]) if at is not None else ""
        if not name or name.endswith("/"):
            continue
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            out.write(src.read())
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(target, mode)
PY
    rm -f "$root/toolchain.zip"
    touch "$root/.complete"
  fi
  echo "$root/bin/go"
}

GO="$(ensure_go)"
rm -rf "$PRISM_DIR"; mkdir -p "$PRISM_DIR/bin"
BUILD="$PRISM_DIR/.build"
started=$(date +%s)
# GOTOOLCHAIN=local: build with the go chosen above, never a second automatic download.
# -modcacherw: the module cache is deletable afterwards without chmod.
env GOTOOLCHAIN=local GOFLAGS=-modcacherw GOPROXY=https://proxy.golang.org \
    GOPATH="$BUILD/gopath" GOMODCACHE="$BUILD/gopath/pkg/mod" GOCACHE="$BUILD/gocache" \
    GOBIN="$PRISM_DIR/bin" CGO_ENABLED=0 \
    "$GO" install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$PRISM_VERSION"
rm -rf "$BUILD"
echo "prism $PRISM_VERSION built in $(( $(date +%s) - started )) s with $("$GO" version)" \
  | tee "$PRISM_DIR/build.txt"
touch "$PRISM_DIR/.complete"
echo "prism $PRISM_VERSION: $PRISM_DIR/bin/prism"
