// the prepare step: what the rest of the agent may use of it
export * from "./confine.ts";
export * from "./credentials.ts";
export * from "./git-stack.ts";
export * from "./git.ts";
export * from "./image-ref.ts";
export * from "./images.ts";
export * from "./plan.ts";
export * from "./prepare.ts";
export * from "./registry.ts";
export * from "./render.ts";
export * from "./resolve-rollback.ts";
export { REDACTED, redactSecretEnv } from "./secrets.ts";
export * from "./stack-policy.ts";
export * from "./stages.ts";
