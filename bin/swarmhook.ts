#!/usr/bin/env node
// The operator's command line: small tools around the API and the spool.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { sendDeploy } from "../api/send.ts";

const HELP = `Usage: swarmhook <command> [options]

Commands:
  send      sign and POST a deploy request to the API, exactly as GitHub would

swarmhook send --repository OWNER/NAME --sha SHA [--branch main] [--url URL]
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

Example (kvm8 is the edge; run from anywhere that reaches it):
  DEPLOY_WEBHOOK_SECRET=... swarmhook send --url https://app.example.com/api/webhook/github \\
    --repository acme/app --sha "$(git rev-parse HEAD)"
`;

function fail(message: string): never {
  process.stderr.write(`swarmhook: ${message}\n`);
  process.exit(2);
}

async function send(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: "string" },
      "secret-file": { type: "string" },
      repository: { type: "string" },
      branch: { type: "string", default: "main" },
      sha: { type: "string" },
      "committed-at": { type: "string" },
      sender: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const url = values.url ?? process.env.DEPLOY_WEBHOOK_URL;
  const file = values["secret-file"];
  const secret = (file ? readFileSync(file, "utf8") : process.env.DEPLOY_WEBHOOK_SECRET ?? "").replace(/\r?\n$/, "");
  if (!url) fail("--url or DEPLOY_WEBHOOK_URL is required");
  if (!secret) fail("the secret is required: --secret-file FILE or DEPLOY_WEBHOOK_SECRET");
  if (!values.repository || !values.sha) fail("--repository and --sha are required (swarmhook send --help)");
  const r = await sendDeploy({
    url, secret, repository: values.repository, branch: values.branch, sha: values.sha,
    committedAt: values["committed-at"], sender: values.sender,
  }).catch((err: Error) => fail(`${err.message}${err.cause ? ` (${String((err.cause as Error).message ?? err.cause)})` : ""}`));
  process.stdout.write(`${r.status} ${r.body}\n`);
  process.stderr.write(`delivery ${r.deliveryId}\n`);
  process.exitCode = r.status >= 200 && r.status < 300 ? 0 : 1;
}

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case "send":
    await send(rest).catch((err: Error) => fail(err.message));
    break;
  case undefined:
  case "-h":
  case "--help":
  case "help":
    process.stdout.write(HELP);
    break;
  default:
    fail(`unknown command "${command}" (swarmhook --help)`);
}
