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
