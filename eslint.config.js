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
const imports = (...forbidden) => ({
  "no-restricted-imports": [
    "error",
    {
      paths: [noShell],
      patterns: forbidden.map((dir) => ({
        group: [`**/${dir}/*`, `../${dir}/*`, `../../${dir}/*`],
        message: `this folder may not import ${dir}/ (docs/development.md: layout and import rules)`,
      })),
    },
  ],
});

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
  {
    files: ["api/**", "agent/**", "spool/**", "lib/**"],
    rules: { "no-console": "error" },
  },
  {
    // a function that does not fit on a screen wants splitting (STYLE.md); physical lines, nothing skipped
    files: ["api/**", "agent/**", "spool/**", "lib/**", "bin/**", "bench/**"],
    rules: { "max-lines-per-function": ["error", { max: 80, skipBlankLines: false, skipComments: false, IIFEs: true }] },
  },
);
