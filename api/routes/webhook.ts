import { Hono, type Context } from "hono";
import type { Logger } from "pino";
import { DELIVERY_ID, publishJob, type Spool } from "../../spool/index.ts";
import { readSignedBody, type BodyBudget } from "../body.ts";
import type { ClientAddress } from "../client-address.ts";
import type { ApiConfig } from "../config.ts";
import { decide } from "../deploy-filter.ts";
import { HttpError } from "../errors.ts";

const SIGNATURE = /^sha256=[0-9a-f]{64}$/;
const EVENT = /^[a-z_]{1,64}$/;
const JSON_TYPE = /^application\/json\s*(;|$)/i;
const FORM_TYPE = /^application\/x-www-form-urlencoded\s*(;|$)/i;

export interface WebhookDeps {
  config: Readonly<ApiConfig>;
  spool: Spool;
  log: Logger;
  budget: BodyBudget;
  /** Who sent a request (behind Traefik, the forwarded address it vouches for): large bodies are counted per client. */
  clientAddress: ClientAddress;
  now: () => Date;
}

interface Headers {
  form: boolean;
  signature: string;
  event: string;
  deliveryId: string;
}

function checkHeaders(c: Context): Headers {
  const type = c.req.header("content-type") ?? "";
  const form = FORM_TYPE.test(type);
  if (!form && !JSON_TYPE.test(type)) {
    throw new HttpError(
      415,
      "Content-Type must be application/json or application/x-www-form-urlencoded (GitHub's two webhook content types)",
    );
  }
  const signature = c.req.header("x-hub-signature-256");
  if (signature === undefined) {
    const sha1Only = c.req.header("x-hub-signature") !== undefined;
    throw new HttpError(401, `X-Hub-Signature-256 missing${sha1Only ? ": SHA-1 signatures are not accepted" : ""}`, {
      logAs: sha1Only ? "SHA-1 signature only" : "unsigned",
    });
  }
  // a repeated header arrives joined with ", " and fails here too
  if (!SIGNATURE.test(signature)) {
    throw new HttpError(401, "X-Hub-Signature-256 malformed: expected sha256= and 64 hex digits", { logAs: "malformed signature" });
  }
  return { form, signature, event: c.req.header("x-github-event") ?? "", deliveryId: c.req.header("x-github-delivery") ?? "" };
}

/** The payload of a verified body: the JSON itself, or, form-encoded, the JSON in its `payload` field. */
function payloadOf(body: Buffer, form: boolean): unknown {
  const text = body.toString("utf8");
  const json = form ? new URLSearchParams(text).get("payload") : text;
  if (json === null) throw new HttpError(400, "form-encoded body without a payload field");
  try {
    return JSON.parse(json);
  } catch {
    throw new HttpError(400, form ? "the payload field is not valid JSON" : "body is not valid JSON");
  }
}

/**
 * POST /api/webhook/github: verify X-Hub-Signature-256 over the raw bytes as they stream in, decide,
 * and answer 202 only once the job is durably in `new/`. Errors are answered by app.onError.
 * @example
 * app.route("/api/webhook/github", createWebhookRoute({ config, spool, log, budget, clientAddress, now: () => new Date() }));
 */
export function createWebhookRoute(deps: WebhookDeps): Hono {
  const { config, spool } = deps;
  return new Hono().post("/", async (c) => {
    const started = performance.now();
    const receivedAt = deps.now();
    const h = checkHeaders(c);
    const signed = await readSignedBody(c, {
      limit: config.bodyLimit,
      budget: deps.budget,
      secret: config.secret,
      signature: h.signature,
      client: deps.clientAddress(c),
    });
    try {
      if (signed.length === 0) throw new HttpError(400, "empty body");
      if (!signed.valid) throw new HttpError(401, "signature does not match the payload");
      if (!EVENT.test(h.event)) throw new HttpError(400, "X-GitHub-Event missing or malformed");
      if (!DELIVERY_ID.test(h.deliveryId)) throw new HttpError(400, "X-GitHub-Delivery missing or malformed");
      // one literal that names its own fields first, not `{ ...fields, ...extra }`: V8 11 (Node 20) moves an
      // object cloned by a leading spread and then added to into the old generation, even when pino drops
      // the line (bench/webhook: ~250 B a request, garbage waiting for a major GC: most of the API's RSS
      // above the bare server's). ESLint refuses that shape in api/.
      const done = (status: number, outcome: string, extra: Record<string, unknown> = {}) => {
        const durationMs = Math.round(performance.now() - started);
        deps.log.info({ deliveryId: h.deliveryId, event: h.event, status, outcome, durationMs, ...extra }, `webhook ${outcome}`);
      };
      const decision = decide({ id: h.deliveryId, event: h.event, payload: payloadOf(signed.body, h.form), receivedAt }, config.deploy);
      signed.release(); // the bytes are parsed: what is held from here on is small
      if (decision.kind === "ping") {
        done(200, "pong");
        return c.json({ pong: true }, 200);
      }
      if (decision.kind === "ignored") {
        done(202, "ignored", { reason: decision.reason });
        return c.json({ ignored: decision.reason }, 202);
      }
      const { job } = decision;
      const fields = { payload: { repository: job.repository, ref: job.ref, sha: job.sha } };
      const r = await publishJob(spool, job, receivedAt.getTime());
      done(r.status === "queued" ? 202 : 200, r.status, fields);
      if (r.status === "duplicate") return c.json({ jobId: r.jobId, duplicate: true }, 200);
      if (r.status === "handled") return c.json({ jobId: r.jobId, alreadyHandled: r.outcome }, 200);
      return c.json({ jobId: r.jobId }, 202);
    } finally {
      signed.release();
    }
  });
}
