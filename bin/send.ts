// `swarmhook send`: sign and POST a deploy request exactly as GitHub would.
import { readFileSync } from "node:fs";
import { sendDeploy, type SendResult } from "../api/send.ts";

export const SEND_HELP = `swarmhook send --repository OWNER/NAME --sha SHA [--branch main] [--url URL]
               [--secret-file FILE] [--committed-at ISO-TIME] [--sender NAME]
  --url           the API's webhook URL (default: $DEPLOY_WEBHOOK_URL),
                  e.g. https://app.example.com/api/webhook/github
  --secret-file   file holding the webhook secret (default: $DEPLOY_WEBHOOK_SECRET;
                  the secret is never taken on the command line, where ps would show it)
  --repository    owner/name as configured in DEPLOY_REPOSITORY
  --branch        branch pushed to (default: main)
  --sha           the full 40-hex commit SHA to deploy
  --committed-at  the commit's time (default: now); a job older than the last deploy is stale
  --sender        who asked (default: swarmhook-send)
  Prints the API's answer; exits 0 on 2xx, 1 on any other status, 2 on bad usage or no answer.
`;

export interface SendArgs {
  url?: string;
  secretFile?: string;
  repository?: string;
  branch: string;
  sha?: string;
  committedAt?: string;
  sender?: string;
}

/** Resolve flags and environment into a request; throws a usage message when something is missing. */
export async function send(a: SendArgs, env: NodeJS.ProcessEnv): Promise<SendResult> {
  const url = a.url ?? env.DEPLOY_WEBHOOK_URL;
  const secret = (a.secretFile ? readFileSync(a.secretFile, "utf8") : (env.DEPLOY_WEBHOOK_SECRET ?? "")).replace(/\r?\n$/, "");
  if (!url) throw new Error("--url or DEPLOY_WEBHOOK_URL is required");
  if (!secret) throw new Error("the secret is required: --secret-file FILE or DEPLOY_WEBHOOK_SECRET");
  if (!a.repository || !a.sha) throw new Error("--repository and --sha are required (swarmhook send --help)");
  return sendDeploy({ url, secret, repository: a.repository, branch: a.branch, sha: a.sha, committedAt: a.committedAt, sender: a.sender });
}
