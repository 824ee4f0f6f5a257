/* eslint-disable @typescript-eslint/no-explicit-any -- payload fixtures are edited in place */
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

interface ExampleGroup {
  name: string;
  examples: Record<string, unknown>[];
}

let cache: ExampleGroup[] | undefined;

/** The real payloads GitHub documents, from @octokit/webhooks-examples. */
export function examples(event: string): Record<string, unknown>[] {
  if (!cache) {
    const file = createRequire(import.meta.url).resolve("@octokit/webhooks-examples");
    cache = JSON.parse(readFileSync(file, "utf8")) as ExampleGroup[];
  }
  const group = cache.find((g) => g.name === event);
  if (!group) throw new Error(`no example payloads for ${event}`);
  return structuredClone(group.examples);
}

/** `sha256=<hex>` over the exact bytes, as GitHub computes X-Hub-Signature-256. */
export function sign(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** GitHub's example push to a branch, with the fields a test cares about replaced. */
export function pushPayload(
  o: { ref?: string; before?: string; after?: string; repository?: string; timestamp?: string; message?: string } = {},
): Record<string, unknown> {
  const p = examples("push").find((e) => e.ref === "refs/heads/master" && e.head_commit) as Record<string, any>;
  if (o.ref) p.ref = o.ref;
  if (o.before) p.before = o.before;
  if (o.after) {
    p.after = o.after;
    p.head_commit.id = o.after;
  }
  if (o.repository) {
    p.repository.full_name = o.repository;
    p.repository.name = o.repository.split("/")[1];
  }
  if (o.timestamp) p.head_commit.timestamp = o.timestamp;
  if (o.message) p.head_commit.message = o.message;
  return p;
}
