// The one contract between api (writer) and agent (reader): both import it from here.
export * from "./schema.ts";
export * from "./record.ts";
export * from "./layout.ts";
export * from "./read.ts";
export * from "./deliveries.ts";
export * from "./write.ts";
export * from "./claim.ts";
export * from "./finish.ts";
export * from "./state.ts";
export * from "./progress.ts";
export * from "./history.ts";
export * from "./clean.ts";
