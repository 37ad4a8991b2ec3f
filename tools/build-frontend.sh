#!/usr/bin/env bash
# Bundle the OpenTelemetry web SDK (frontend/otel/index.js and the npm packages pinned in
# frontend/otel/package-lock.json) into one static ES module, frontend/vendor/otel.js, plus its
# source map. The gateway serves it as a same-origin file, which CSP `script-src 'self'` allows.
# Skipped when the bundle is newer than the lock file and the entry point.
#
# Needs node and npm, and the npm registry on a cold cache; npm's cache lives in
# $INBOX_TOOLS_DIR/npm so that a rebuild after `git clean` needs no network.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$root/frontend/otel
out=$root/frontend/vendor/otel.js
cache=${INBOX_TOOLS_DIR:-$HOME/.cache/support-inbox}/npm

if [ -f "$out" ] && [ "$out" -nt "$src/package-lock.json" ] && [ "$out" -nt "$src/index.js" ]; then
  echo "frontend/vendor/otel.js: up to date"; exit 0
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "build-frontend.sh needs $tool (Node.js 18 or later)" >&2; exit 1; }
done

start=$SECONDS
echo "frontend/otel: npm ci (cache $cache)"
# --ignore-scripts: nothing here needs an install script (esbuild's binary comes as an optional
# platform package), and npm 10 and 11 would otherwise disagree on whether esbuild's runs.
# --omit-lockfile-registry-resolved=false: the lock file keeps its registry URLs whatever the
# user's npmrc says, should npm ever rewrite it.
(cd "$src" && npm ci --cache "$cache" --ignore-scripts --no-audit --no-fund --prefer-offline \
  --omit-lockfile-registry-resolved=false --loglevel=error)

esbuild=$src/node_modules/.bin/esbuild
args=("$src/index.js" --bundle --format=esm --platform=browser --target=es2020 --minify
  --log-level=warning)
# A first pass only to learn which packages end up in the bundle (the lock file also holds the
# Node-only dependencies of @opentelemetry/instrumentation, which the browser build leaves out);
# the banner then names each with its version and licence, read from its package.json.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$esbuild" "${args[@]}" --metafile="$tmp/meta.json" --outfile="$tmp/otel.js"
banner=$(node --input-type=module - "$src" "$tmp/meta.json" <<'JS'
import { readFileSync } from "node:fs";
const [src, meta] = process.argv.slice(2);
const names = new Set();
for (const input of Object.keys(JSON.parse(readFileSync(meta, "utf8")).inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) names.add(m[1]);
}
const pkgs = [...names].sort().map((name) => {
  const p = JSON.parse(readFileSync(`${src}/node_modules/${name}/package.json`, "utf8"));
  return `${name}@${p.version} (${p.license})`;
});
console.log(`/*! frontend/vendor/otel.js, built by tools/build-frontend.sh from frontend/otel. ` +
  `Bundles the npm packages ${pkgs.join(", ")}. ` +
  `Apache-2.0: https://www.apache.org/licenses/LICENSE-2.0 */`);
JS
)

mkdir -p "$(dirname "$out")"
echo "frontend/otel: esbuild index.js -> frontend/vendor/otel.js (esm, es2020, minified, source map)"
"$esbuild" "${args[@]}" --sourcemap --banner:js="$banner" --outfile="$out"

size=$(wc -c <"$out")
echo "frontend/vendor/otel.js: $(( (size + 512) / 1024 )) KB (+ otel.js.map), built in $(( SECONDS - start ))s"
