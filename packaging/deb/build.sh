#!/usr/bin/env bash
# Builds dist/popgate_<version>-1_amd64.deb from this checkout (make deb).
#
# Reproducible: the same commit gives the same .deb, byte for byte. Every timestamp is
# SOURCE_DATE_EPOCH (default: the last commit's time), the binary is built with -trimpath
# and without VCS stamping, the man page and changelog are gzipped without names or times.
#
# Environment:
#   POPGATE_VERSION    upstream version (default: packaging/version.sh from git describe)
#   SOURCE_DATE_EPOCH  timestamp of every file (default: the last commit's)
#   DIST               output directory (default: dist)
#   GO                 go command (default: go)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
GO=${GO:-go}
DIST=${DIST:-dist}
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)

POPGATE_VERSION=${POPGATE_VERSION:-$(packaging/version.sh)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export POPGATE_VERSION SOURCE_DATE_EPOCH
deb_version=$POPGATE_VERSION-1
out=$DIST/popgate_${deb_version}_amd64.deb

# nfpm.yaml names the staged files relative to the repository root.
stage=$root/dist/build/deb
rm -rf "$stage"
mkdir -p "$stage"

# A PIE, not a static binary: lintian calls a static one an error. CGO stays off, so the
# binary needs no libc beyond the dynamic loader.
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 "$GO" build -buildmode=pie -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=$POPGATE_VERSION" -o "$stage/popgate" ./cmd/popgate

gzip -9n <packaging/deb/popgate.8 >"$stage/popgate.8.gz"

# changelog.Debian: one entry for this build.
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
date_rfc=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
{
	printf 'popgate (%s) bookworm; urgency=medium\n\n' "$deb_version"
	printf '  * Built from commit %s of https://github.com/popgate/popgate.\n' "$commit"
	printf '    See the git history for the changes.\n\n'
	printf ' -- popgate maintainers <maintainers@popgate.dev>  %s\n' "$date_rfc"
} | gzip -9n >"$stage/changelog.Debian.gz"

"$GO" -C packaging/tools run ./debcopyright -bin "$stage/popgate" -header "$root/packaging/deb/copyright.head" \
	-modcache "$("$GO" env GOMODCACHE)" -goroot "$("$GO" env GOROOT)" -o "$stage/copyright"

# nfpm v2.45.2, pinned in packaging/tools/go.mod, run from here.
"$GO" tool -modfile=packaging/tools/go.mod nfpm package --packager deb \
	--config packaging/deb/nfpm.yaml --target "$out" >/dev/null
echo "$out"
