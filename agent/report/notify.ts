import { createHmac } from "node:crypto";
import { shortSha } from "../../spool/index.ts";
import type { NotifyMessage } from "./outbox.ts";
import type { NotifyFormat } from "../config.ts";
import { summary } from "./report-policy.ts";

const TIMEOUT_MS = 10_000;
const COLOUR = { good: 0x1a7f37, bad: 0xcf222e, warn: 0x9a6700 };

const good = (m: NotifyMessage) => m.outcome === "success" || m.event === "in_sync";
const warning = (m: NotifyMessage) => m.outcome === "superseded" || m.outcome === "stale" || m.event === "drift";
const icon = (m: NotifyMessage) =>
  good(m) ? (m.event === "recovered" || m.event === "in_sync" ? ":white_check_mark:" : ":rocket:") : warning(m) ? ":warning:" : ":x:";

/** Slack's control characters escaped as Slack documents (`&`, `<`, `>`): a ref `refs/tags/<!channel>` pings no one. */
export const slackEscape = (text: string): string => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Slack's incoming-webhook body: a text fallback and one section block (mrkdwn), the commit linked. */
function slack(m: NotifyMessage): unknown {
  const text = `${icon(m)} ${slackEscape(summary(m))}`;
  const link = m.url ? ` <${m.url}|details>` : "";
  const commit = m.sha && m.repository ? ` · <https://github.com/${m.repository}/commit/${m.sha}|${shortSha(m.sha)}>` : "";
  return { text, blocks: [{ type: "section", text: { type: "mrkdwn", text: `${text}${commit}${link}` } }] };
}

/** Discord's webhook body: one embed, coloured by outcome. */
function discord(m: NotifyMessage): unknown {
  const title = summary(m).slice(0, 256); // an embed renders no mention: allowed_mentions below is for the content
  return {
    username: "swarmhook",
    // no @everyone, role or user mention from a reason a committer wrote (a ref, a commit message)
    allowed_mentions: { parse: [] },
    embeds: [
      {
        title,
        ...(m.url ? { url: m.url } : {}),
        color: good(m) ? COLOUR.good : warning(m) ? COLOUR.warn : COLOUR.bad,
        fields: [
          { name: "stack", value: m.stack ?? "-", inline: true },
          { name: "commit", value: m.sha ? shortSha(m.sha) : "-", inline: true },
          { name: "outcome", value: m.event === "recovered" ? `recovered after ${m.failures}` : m.outcome, inline: true },
        ],
      },
    ],
  };
}

/** The body and headers one target gets for one message; the generic JSON is signed when a secret is set. */
export function renderNotification(
  format: NotifyFormat,
  m: NotifyMessage,
  secret: string | undefined,
): { body: string; headers: Record<string, string> } {
  const body = JSON.stringify(format === "slack" ? slack(m) : format === "discord" ? discord(m) : m);
  const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "swarmhook", "x-swarmhook-event": m.event };
  if (format === "json" && secret)
    headers["x-swarmhook-signature-256"] = `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
  return { body, headers };
}

/** A failure the endpoint will answer the same way again (a 4xx other than 408 and 429): dropped, not retried. */
export class PermanentNotifyError extends Error {}

/**
 * POST one message to one chat endpoint, within 10 s. Resolves on 2xx; throws PermanentNotifyError
 * on a 4xx other than 408/429, another Error otherwise (to be retried). Errors never carry the URL.
 */
export async function sendNotification(
  target: { format: NotifyFormat; url: string },
  m: NotifyMessage,
  secret: string | undefined,
): Promise<void> {
  const { body, headers } = renderNotification(target.format, m, secret);
  let res: Response;
  try {
    res = await fetch(target.url, { method: "POST", body, headers, signal: AbortSignal.timeout(TIMEOUT_MS), redirect: "error" });
  } catch (err) {
    throw new Error(
      `${target.format} endpoint unreachable: ${(err as Error).name === "TimeoutError" ? "timed out" : (err as Error).message}`,
    );
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.ok) return;
  const said = `${target.format} endpoint answered HTTP ${res.status}`;
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw new PermanentNotifyError(said);
  throw new Error(said);
}
