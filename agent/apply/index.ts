// the apply step: what the rest of the agent may use of it
export * from "./deploy.ts";
