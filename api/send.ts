import { createHmac, randomUUID } from "node:crypto";
import { COMMIT_SHA, REPOSITORY } from "../spool/index.ts";

export interface SendOptions {
  url: string;
  secret: string;
  repository: string;
  branch: string;
  sha: string;
  /** The branch's commit before `sha` (the push chain); all zeros when unknown. */
  before?: string;
  committedAt?: string;
  sender?: string;
  deliveryId?: string;
  timeoutMs?: number;
}

export interface SendResult {
  status: number;
  body: string;
  deliveryId: string;
}

/** A push-shaped payload, carrying the fields the API reads the way GitHub sends them. */
export function pushBody(o: Pick<SendOptions, "repository" | "branch" | "sha" | "before" | "committedAt" | "sender">): string {
  const [owner = "", name = ""] = o.repository.split("/");
  const sender = o.sender ?? "swarmhook-send";
  return JSON.stringify({
    ref: `refs/heads/${o.branch}`,
    before: o.before ?? "0".repeat(40),
    after: o.sha,
    created: false,
    deleted: false,
    forced: false,
    repository: { name, full_name: o.repository, owner: { login: owner, name: owner } },
    head_commit: { id: o.sha, timestamp: o.committedAt ?? new Date().toISOString(), message: "deploy request from swarmhook send" },
    pusher: { name: sender },
    sender: { login: sender },
  });
}

/**
 * Sign and POST a deploy request exactly as GitHub would (event push, X-Hub-Signature-256 over the bytes).
 * @example
 * const r = await sendDeploy({ url: "https://app.example.com/api/webhook/github", secret, repository: "acme/app", branch: "main", sha });
 */
export async function sendDeploy(o: SendOptions): Promise<SendResult> {
  if (!REPOSITORY.test(o.repository)) throw new Error(`--repository must be owner/name, got "${o.repository}"`);
  if (!COMMIT_SHA.test(o.sha)) throw new Error("--sha must be a full 40-hex commit SHA");
  if (o.before !== undefined && !COMMIT_SHA.test(o.before)) throw new Error("--before must be a full 40-hex commit SHA");
  if (!/^https?:\/\//.test(o.url)) throw new Error("--url must be an http(s) URL");
  const body = pushBody(o);
  const deliveryId = o.deliveryId ?? randomUUID();
  const res = await fetch(o.url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "user-agent": "swarmhook-send",
      "x-github-event": "push",
      "x-github-delivery": deliveryId,
      "x-hub-signature-256": `sha256=${createHmac("sha256", o.secret).update(body).digest("hex")}`,
    },
    body,
    signal: AbortSignal.timeout(o.timeoutMs ?? 15_000),
  });
  return { status: res.status, body: await res.text(), deliveryId };
}
