// the report step: what the rest of the agent may use of it
export * from "./github.ts";
export * from "./notify.ts";
export * from "./outbox-sender.ts";
export * from "./outbox.ts";
export * from "./report-policy.ts";
export * from "./reporter.ts";
