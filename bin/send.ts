// `swarmhook send`: sign and POST a deploy request exactly as GitHub would.
import { readFileSync } from "node:fs";
import { sendDeploy, type SendResult } from "../api/send.ts";

export const SEND_HELP = `swarmhook send --repository OWNER/NAME --sha SHA [--branch main] [--url URL]
               [--secret-file FILE] [--before SHA] [--committed-at ISO-TIME] [--sender NAME]
               [--wait [--timeout S] [--history-token-file FILE]]
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
  --wait          after the 202, wait for the verified outcome through the API's history
                  (…/api/deployments/<job id>, with the history token) and exit by it: 0 success
                  (or planned), 1 failed, rolled back, blocked or invalid (the reason printed),
                  3 superseded or stale. Without a token it says so and does not wait.
  --timeout       how long --wait waits, in seconds (default 1800)
  --history-token-file  file holding the API's HISTORY_TOKEN (default: $DEPLOY_HISTORY_TOKEN)
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

/** The history token for --wait: --history-token-file, else $DEPLOY_HISTORY_TOKEN; undefined when neither. */
export function historyToken(file: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const token = (file ? readFileSync(file, "utf8") : (env.DEPLOY_HISTORY_TOKEN ?? "")).trim();
  return token === "" ? undefined : token;
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
