import { Webhooks } from "@octokit/webhooks";
import { Hono, type Context } from "hono";
import type { Logger } from "pino";
import { DELIVERY_ID, SpoolError, publishJob, type Spool } from "../../spool/index.ts";
import type { ApiConfig } from "../config.ts";
import { decide } from "../deploy-filter.ts";
import { HttpError } from "../errors.ts";
import { readBodyLimited } from "../read-body.ts";

const SIGNATURE = /^sha256=[0-9a-f]{64}$/;
const EVENT = /^[a-z_]{1,64}$/;

export interface WebhookDeps {
  config: Readonly<ApiConfig>;
  spool: Spool;
  log: Logger;
  now: () => Date;
}

function checkHeaders(c: Context): { signature: string; event: string; deliveryId: string } {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, "Content-Type must be application/json (set it in the webhook's settings)");
  }
  const signature = c.req.header("x-hub-signature-256");
  if (signature === undefined) {
    throw new HttpError(401, c.req.header("x-hub-signature") ? "X-Hub-Signature-256 missing: SHA-1 signatures are not accepted" : "X-Hub-Signature-256 missing");
  }
  // a repeated header arrives joined with ", " and fails here too
  if (!SIGNATURE.test(signature)) throw new HttpError(401, "X-Hub-Signature-256 malformed: expected sha256= and 64 hex digits");
  const event = c.req.header("x-github-event") ?? "";
  const deliveryId = c.req.header("x-github-delivery") ?? "";
  return { signature, event, deliveryId };
}

/**
 * POST /api/webhook/github: verify X-Hub-Signature-256 over the raw bytes, decide, and answer 202
 * only once the job is durably in `new/`.
 * @example
 * app.route("/api/webhook/github", createWebhookRoute({ config, spool, log, now: () => new Date() }));
 */
export function createWebhookRoute(deps: WebhookDeps): Hono {
  const webhooks = new Webhooks({ secret: deps.config.secret });

  return new Hono().post("/", async (c) => {
    const started = performance.now();
    const receivedAt = deps.now();
    const { signature, event, deliveryId } = checkHeaders(c);
    const body = await readBodyLimited(c, deps.config.bodyLimit);
    if (body.length === 0) throw new HttpError(400, "empty body");
    // octokit verifies a string: a body that is not UTF-8 cannot survive the round trip and fails here
    if (!(await webhooks.verify(body.toString("utf8"), signature))) throw new HttpError(401, "signature does not match the payload");

    if (!EVENT.test(event)) throw new HttpError(400, "X-GitHub-Event missing or malformed");
    if (!DELIVERY_ID.test(deliveryId)) throw new HttpError(400, "X-GitHub-Delivery missing or malformed");
    const log = deps.log.child({ deliveryId, event });
    const finish = (status: number, outcome: string, extra: Record<string, unknown> = {}) =>
      log.info({ status, outcome, durationMs: Math.round(performance.now() - started), ...extra }, `webhook ${outcome}`);

    let payload: unknown;
    try {
      payload = JSON.parse(body.toString("utf8"));
    } catch {
      finish(400, "bad_json");
      throw new HttpError(400, "body is not valid JSON");
    }

    let decision;
    try {
      decision = decide({ id: deliveryId, event, payload, receivedAt }, deps.config.deploy);
    } catch (err) {
      if (err instanceof HttpError) finish(err.status, "bad_payload", { reason: err.message });
      throw err;
    }
    if (decision.kind === "ping") {
      finish(200, "pong");
      return c.json({ pong: true }, 200);
    }
    if (decision.kind === "ignored") {
      finish(202, "ignored", { reason: decision.reason });
      return c.json({ ignored: decision.reason }, 202);
    }
    const { job } = decision;
    const fields = { payload: { repository: job.repository, ref: job.ref, sha: job.sha } };
    try {
      const r = await publishJob(deps.spool, job);
      if (r.duplicate) {
        finish(200, "duplicate", fields);
        return c.json({ jobId: r.jobId, duplicate: true }, 200);
      }
      finish(202, "queued", fields);
      return c.json({ jobId: r.jobId }, 202);
    } catch (err) {
      if (err instanceof SpoolError) {
        log.error({ err: { message: err.message, code: err.code }, ...fields }, "job not written: spool unavailable");
        throw new HttpError(503, `spool unavailable (${err.code}): the job was not queued, redeliver later`);
      }
      throw err;
    }
  });
}
