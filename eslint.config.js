import js from "@eslint/js";
import tseslint from "typescript-eslint";

// a child_process exec with a string is a shell: argv arrays only (STYLE.md)
const noShell = {
  name: "node:child_process",
  importNames: ["exec", "execSync"],
  message: "no shell strings: use execFile/spawn with an argv array, or agent/docker.ts",
};

/**
 * What each folder may import (docs/development.md: layout and import rules): lib/ nothing of ours, spool/ only lib/, api/ and
 * agent/ spool/ and lib/ but never each other; bin/, test/ and bench/ may import anything.
 */
const folders = (forbidden) =>
  forbidden.map((dir) => ({
    group: [`**/${dir}/*`, `../${dir}/*`, `../../${dir}/*`],
    message: `this folder may not import ${dir}/ (docs/development.md: layout and import rules)`,
  }));
const imports = (...forbidden) => ({ "no-restricted-imports": ["error", { paths: [noShell], patterns: folders(forbidden) }] });

/**
 * The agent's steps, in the order a deploy walks them. A step imports an earlier one, and the agent's
 * top (the scheduler, the pipeline) imports any, only through its index.ts; a step never imports a
 * later one. Files inside a step import each other freely.
 */
const STEPS = ["prepare", "apply", "verify", "record", "report"];
const stepRule = (step) => {
  const at = STEPS.indexOf(step);
  const prefix = step === null ? "./" : "../";
  const later = (other) => at >= 0 && STEPS.indexOf(other) > at;
  const patterns = STEPS.filter((s) => s !== step).map((other) =>
    later(other)
      ? {
          group: [`${prefix}${other}/*`],
          message: `${step}/ comes before ${other}/ in a deploy and may not import it (docs/development.md)`,
        }
      : {
          group: [`${prefix}${other}/*`, `!${prefix}${other}/index.ts`],
          message: `import ${other}/ through ${other}/index.ts, not its files (docs/development.md: layout and import rules)`,
        },
  );
  return { "no-restricted-imports": ["error", { paths: [noShell], patterns: [...folders(["api", "bin"]), ...patterns] }] };
};

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "stack/frontend/", ".swarmhook/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "no-restricted-imports": ["error", { paths: [noShell] }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  { files: ["lib/**"], rules: imports("spool", "api", "agent", "bin") },
  { files: ["spool/**"], rules: imports("api", "agent", "bin") },
  { files: ["api/**"], rules: imports("agent", "bin") },
  { files: ["agent/**"], rules: imports("api", "bin") },
  { files: ["agent/*.ts"], rules: stepRule(null) },
  ...STEPS.map((step) => ({ files: [`agent/${step}/**`], rules: stepRule(step) })),
  // the reconcile loop runs between deploys, at the top: every step, each through its index.ts
  { files: ["agent/reconcile/**"], rules: stepRule("reconcile") },
  {
    files: ["api/**", "agent/**", "spool/**", "lib/**"],
    rules: { "no-console": "error" },
  },
  {
    // the API serves requests: V8 11 (Node 20) moves an object made by a leading spread and then given more
    // properties ({ ...a, ...b }, { ...a, k }) into the old generation, where it waits for a major GC
    // (bench/webhook: ~250 B a request, most of the API's RSS above the bare server's). Name own properties first.
    files: ["api/**"],
    rules: {
      "no-restricted-syntax": [
        "error",
        {
          selector: "ObjectExpression > SpreadElement:first-child + *",
          message: "a literal that starts with a spread and adds to it is old-generation garbage in V8 11: name its own properties first",
        },
      ],
    },
  },
  {
    // a function that does not fit on a screen wants splitting (STYLE.md); physical lines, nothing skipped
    files: ["api/**", "agent/**", "spool/**", "lib/**", "bin/**", "bench/**"],
    rules: { "max-lines-per-function": ["error", { max: 80, skipBlankLines: false, skipComments: false, IIFEs: true }] },
  },
);
