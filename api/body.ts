import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Context } from "hono";
import { HttpError } from "./errors.ts";

/** Bytes held by every request body in flight together; a body that would pass it gets 503. */
export interface BodyBudget {
  take(bytes: number): boolean;
  give(bytes: number): void;
  readonly held: number;
}

/** @example const budget = createBodyBudget(64 * 1024 * 1024); */
export function createBodyBudget(limit: number): BodyBudget {
  let held = 0;
  return {
    take(bytes) {
      if (held + bytes > limit) return false;
      held += bytes;
      return true;
    },
    give(bytes) {
      held = Math.max(0, held - bytes);
    },
    get held() {
      return held;
    },
  };
}

export interface SignedBody {
  readonly body: Buffer;
  /** Bytes received. */
  readonly length: number;
  /** The HMAC, computed chunk by chunk as the body arrived, matches X-Hub-Signature-256. */
  valid: boolean;
  /** Give the body's bytes back to the budget; call once the request is done with the body. */
  release(): void;
}

export interface ReadOptions {
  limit: number;
  budget: BodyBudget;
  secret: string;
  /** `sha256=<64 hex>`, already checked for form. */
  signature: string;
}

const RETRY_AFTER_S = 5;
const tooLarge = (limit: number) => new HttpError(413, `payload over ${limit} bytes`);
const busy = () => new HttpError(503, "too many request bodies in flight; retry shortly", { retryAfter: RETRY_AFTER_S });

/**
 * Read a webhook body while computing its HMAC-SHA256 incrementally: nothing is parsed before the
 * whole body is verified, nothing past `limit` is buffered (413), and all bodies in flight together
 * stay within the budget (503 with Retry-After). A refused body is left to node to drain, so the
 * client reads its answer instead of a connection reset. A slow body is cut by the server's
 * `requestTimeout` (api/server.ts).
 */
export async function readSignedBody(c: Context, o: ReadOptions): Promise<SignedBody> {
  const declared = Number(c.req.header("content-length") ?? Number.NaN);
  if (declared > o.limit) throw tooLarge(o.limit);
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const source = incoming ?? c.req.raw.body;
  if (!source) return finish([], 0, 0, createHmac("sha256", o.secret), o);
  // reserve a declared length up front: a flood of large bodies is refused before any byte is held
  const reserved = Number.isFinite(declared) && declared > 0 ? declared : 0;
  if (reserved > 0 && !o.budget.take(reserved)) throw busy();
  const hmac = createHmac("sha256", o.secret);
  const chunks: Buffer[] = [];
  let total = 0;
  let extra = 0; // taken beyond the reservation (chunked bodies, or a lying Content-Length)
  const accept = (chunk: Buffer): HttpError | undefined => {
    total += chunk.length;
    if (total > o.limit) return tooLarge(o.limit);
    if (total > reserved) {
      const more = total - reserved - extra;
      if (!o.budget.take(more)) return busy();
      extra += more;
    }
    hmac.update(chunk);
    chunks.push(chunk);
    return undefined;
  };
  try {
    await (incoming ? readIncoming(incoming, accept) : readWeb(source as ReadableStream<Uint8Array>, accept));
  } catch (err) {
    o.budget.give(reserved + extra);
    throw err;
  }
  return finish(chunks, total, reserved + extra, hmac, o);
}

function finish(chunks: Buffer[], total: number, held: number, hmac: ReturnType<typeof createHmac>, o: ReadOptions): SignedBody {
  const expected = hmac.digest();
  const given = Buffer.from(o.signature.slice("sha256=".length), "hex");
  let released = false;
  let body: Buffer | undefined;
  return {
    get body() {
      // joined only when asked for: a body that failed verification is never copied
      body ??= chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
      return body;
    },
    length: total,
    valid: given.length === expected.length && timingSafeEqual(given, expected),
    release() {
      if (!released) o.budget.give(held);
      released = true;
    },
  };
}

/**
 * Feed node's request stream to `accept` chunk by chunk. On a refusal the stream is left alone (not
 * destroyed): node drains the rest once the answer is sent, so the client reads it instead of a reset.
 */
function readIncoming(incoming: IncomingMessage, accept: (chunk: Buffer) => HttpError | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      incoming.off("data", onData).off("end", onEnd).off("error", onGone).off("close", onClose);
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: Buffer) => {
      const refused = accept(chunk);
      if (refused) done(refused);
    };
    const onEnd = () => done();
    const onGone = () => done(new HttpError(400, "the client closed the connection mid-body", { clientGone: true }));
    const onClose = () => (incoming.readableEnded ? done() : onGone());
    incoming.on("data", onData).on("end", onEnd).on("error", onGone).on("close", onClose);
    if (incoming.readableEnded) done();
  });
}

/** The same for a web stream (in-process `app.request`). */
async function readWeb(body: ReadableStream<Uint8Array>, accept: (chunk: Buffer) => HttpError | undefined): Promise<void> {
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    const refused = accept(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    if (refused) {
      await reader.cancel().catch(() => undefined);
      throw refused;
    }
  }
}
