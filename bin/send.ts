// `swarmhook send`: sign and POST a deploy request exactly as GitHub would.
import { readFileSync } from "node:fs";
import { sendDeploy, type SendResult } from "../api/send.ts";

export const SEND_HELP = `swarmhook send --repository OWNER/NAME --sha SHA [--branch main] [--url URL]
               [--secret-file FILE] [--before SHA] [--committed-at ISO-TIME] [--sender NAME]
  --url           the API's webhook URL (default: $DEPLOY_WEBHOOK_URL),
                  e.g. https://app.example.com/api/webhook/github
  --secret-file   file holding the webhook secret (default: $DEPLOY_WEBHOOK_SECRET;
                  the secret is never taken on the command line, where ps would show it)
  --repository    owner/name as configured in DEPLOY_REPOSITORY
  --branch        branch pushed to (default: main)
  --sha           the full 40-hex commit SHA to deploy
  --before        the branch's commit before this one (GitHub's push chain; in Actions
                  \${{ github.event.before }}): a late request for a commit the branch has
                  already moved past is then recorded stale instead of deployed
  --committed-at  the commit's time (default: now); shown in records, never used to decide
  --sender        who asked (default: swarmhook-send)
  Prints the API's answer; exits 0 on 2xx, 1 on any other status, 2 on bad usage or no answer.
`;

export interface SendArgs {
  url?: string;
  secretFile?: string;
  repository?: string;
  branch: string;
  sha?: string;
  before?: string;
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
  const before = a.before === "" ? undefined : a.before; // Actions gives "" for a manual run
  return sendDeploy({
    url,
    secret,
    repository: a.repository,
    branch: a.branch,
    sha: a.sha,
    before,
    committedAt: a.committedAt,
    sender: a.sender,
  });
}
