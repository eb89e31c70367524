#!/bin/bash
# make.sh VERSION COMMIT: remake the fixture of schema VERSION with the store of COMMIT (see
# README.md), from the repository's root: store/testdata/upgrade/make.sh 2 021878482c
set -euo pipefail
version=$1 commit=$2
root=$(git rev-parse --show-toplevel)
out="$root/store/testdata/upgrade/v$version"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
git -C "$root" archive "$commit" | tar -x -C "$tree"
cp "$out/makefixture_test.go" "$tree/store/"
rm -f "$out/popgate.db" "$out/secret.key"
(cd "$tree" && POPGATE_FIXTURE_DIR="$out" go test -count=1 -run '^TestMakeFixture$' ./store/)
ls -l "$out"
