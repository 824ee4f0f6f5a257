import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "stack/frontend/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      // a child_process exec with a string is a shell: argv arrays only (STYLE.md)
      "no-restricted-imports": ["error", { paths: [{ name: "node:child_process", importNames: ["exec", "execSync"], message: "no shell strings: use execFile/spawn with an argv array, or agent/docker.ts" }] }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  {
    files: ["api/**", "agent/**", "spool/**"],
    rules: {
      "no-console": "error",
    },
  },
);
