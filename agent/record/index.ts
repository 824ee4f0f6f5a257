// the record step: what the rest of the agent may use of it
export * from "./records.ts";
export * from "./rendered.ts";
