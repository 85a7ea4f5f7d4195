#!/usr/bin/env bash
# Runs a command with Node.js VERSION first in PATH (fetched by .ci/node.sh), `npm test` by default:
#
#   npm run test:node -- 24                       # the whole `npm test` on the newest Node 24
#   npm run test:node -- 22 npm run test:unit     # one tier
#   .ci/with-node.sh 24 node --import tsx --test test/system/cares.test.ts
#
# npm stays the machine's, but its script and every `node` it starts (test/run.ts, the test
# runners, the CLI the system tests spawn through process.execPath) run on VERSION. node_modules is
# shared: nothing in it is built for one Node version (no native addon; dist/ is plain ES2022).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: .ci/with-node.sh MAJOR|VERSION [COMMAND ...] (default: npm test)" >&2; exit 2; }
bin=$("$(dirname "$0")/node.sh" "$1")
shift
[ $# -gt 0 ] || set -- npm test
export PATH="$bin:$PATH"
echo "with node $(node --version) ($bin/node): $*" >&2
exec "$@"
