import { randomBytes, randomUUID } from "node:crypto";
import { JOB_VERSION, type DeployJob } from "../../spool/index.ts";

export function randomSha(): string {
  return randomBytes(20).toString("hex");
}

/** A valid deploy job as the API would write it; override any field. */
export function makeJob(overrides: Partial<DeployJob> = {}): DeployJob {
  const now = new Date().toISOString();
  return {
    version: JOB_VERSION,
    kind: "deploy",
    deliveryId: randomUUID(),
    event: "push",
    repository: "Codertocat/Hello-World",
    ref: "refs/heads/main",
    sha: randomSha(),
    committedAt: now,
    sender: "Codertocat",
    receivedAt: now,
    ...overrides,
  };
}
