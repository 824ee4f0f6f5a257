// the verify step: what the rest of the agent may use of it
export * from "./drift.ts";
export * from "./job.ts";
export * from "./release.ts";
export * from "./verify.ts";
