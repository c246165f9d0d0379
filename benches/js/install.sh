#!/usr/bin/env bash
# Installs the npm packages of the JavaScript peer servers (Bun, Node's `ws`) into
# benches/js/node_modules. Called by `cargo xtask load --compare`; not by the tests.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules/ws ] || [ ! -d node_modules/bun ]; then
    npm install --no-audit --no-fund --no-package-lock --loglevel=error
fi

# The `bun` package puts the runtime binary in place in its postinstall script, which
# npm's script policy may have skipped: run the package's own install.js then.
if ! node_modules/bun/bin/bun.exe --version >/dev/null 2>&1; then
    (cd node_modules/bun && node install.js)
fi
echo "node $(node --version), ws $(node -p 'require("ws/package.json").version'), bun $(node_modules/bun/bin/bun.exe --version)"
