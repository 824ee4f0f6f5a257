import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Context } from "hono";
import { HttpError } from "./errors.ts";

/** The first bytes of every body come from a share of the budget kept for them: a signed push (a few KiB) is never refused for large bodies. */
export const SMALL_BODY_BYTES = 256 * 1024;
/** At most this many bodies past SMALL_BODY_BYTES per client address at once. */
export const LARGE_BODIES_PER_CLIENT = 2;

/**
 * Bytes held by every request body in flight together, counted as they arrive (never as a
 * Content-Length promises). The first SMALL_BODY_BYTES of each body come from the small share (an
 * eighth of the limit), the rest from the large share; a body that would pass its share gets 503.
 * Large bodies are also counted per client, at most LARGE_BODIES_PER_CLIENT at once.
 */
export interface BodyBudget {
  /** Take `bytes` more for a body that holds `held` already. */
  take(held: number, bytes: number): boolean;
  /** Give back everything a body of `held` bytes took. */
  give(held: number): void;
  /** A body of `client` grew past SMALL_BODY_BYTES: false when that client has its share of large bodies in flight. */
  enterLarge(client: string): boolean;
  leaveLarge(client: string): void;
  readonly held: number;
}

const split = (held: number, bytes: number) => {
  const small = Math.max(0, Math.min(held + bytes, SMALL_BODY_BYTES) - held);
  return { small, large: bytes - small };
};

/** @example const budget = createBodyBudget(64 * 1024 * 1024); */
export function createBodyBudget(limit: number): BodyBudget {
  const smallLimit = Math.max(SMALL_BODY_BYTES, Math.floor(limit / 8));
  const largeLimit = Math.max(0, limit - smallLimit);
  let small = 0;
  let large = 0;
  const clients = new Map<string, number>();
  return {
    take(held, bytes) {
      const p = split(held, bytes);
      if (small + p.small > smallLimit || large + p.large > largeLimit) return false;
      small += p.small;
      large += p.large;
      return true;
    },
    give(held) {
      const p = split(0, held);
      small = Math.max(0, small - p.small);
      large = Math.max(0, large - p.large);
    },
    enterLarge(client) {
      const n = clients.get(client) ?? 0;
      if (n >= LARGE_BODIES_PER_CLIENT) return false;
      clients.set(client, n + 1);
      return true;
    },
    leaveLarge(client) {
      const n = (clients.get(client) ?? 1) - 1;
      if (n <= 0) clients.delete(client);
      else clients.set(client, n);
    },
    get held() {
      return small + large;
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
  /** Who sends it (the address the API trusts: behind Traefik, the forwarded one), for the per-client share. */
  client: string;
  /** A body must arrive at this rate once `graceMs` have passed, or its connection is cut. */
  minRate?: { bytesPerSecond: number; graceMs: number };
}

/** GitHub sends 25 MB in a few seconds; a sender slower than this holds budget and a socket for nothing. */
export const MIN_BODY_RATE = { bytesPerSecond: 16 * 1024, graceMs: 1000 };
const RATE_CHECK_MS = 250;
const RETRY_AFTER_S = 5;
const tooLarge = (limit: number) => new HttpError(413, `payload over ${limit} bytes`);
const busy = () => new HttpError(503, "too many request bodies in flight; retry shortly", { retryAfter: RETRY_AFTER_S });
const crowded = () =>
  new HttpError(503, `more than ${LARGE_BODIES_PER_CLIENT} large request bodies from one client in flight; retry shortly`, {
    retryAfter: RETRY_AFTER_S,
  });

/**
 * Read a webhook body while computing its HMAC-SHA256 incrementally: nothing is parsed before the
 * whole body is verified, nothing past `limit` is buffered (413), and all bodies in flight together
 * stay within the budget, counted by the bytes that arrived (503 with Retry-After). A body slower
 * than `minRate` is cut (its connection closed) within a second of falling behind. A refused body
 * is otherwise left to node to drain, so the client reads its answer instead of a connection reset.
 */
export async function readSignedBody(c: Context, o: ReadOptions): Promise<SignedBody> {
  const declared = Number(c.req.header("content-length") ?? Number.NaN);
  if (declared > o.limit) throw tooLarge(o.limit);
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const source = incoming ?? c.req.raw.body;
  if (!source) return finish([], 0, createHmac("sha256", o.secret), o, () => undefined);
  const hmac = createHmac("sha256", o.secret);
  const chunks: Buffer[] = [];
  let total = 0;
  let large = false;
  const leave = () => {
    if (large) o.budget.leaveLarge(o.client);
    large = false;
  };
  const accept = (chunk: Buffer): HttpError | undefined => {
    if (total + chunk.length > o.limit) return tooLarge(o.limit);
    if (!large && total + chunk.length > SMALL_BODY_BYTES) {
      if (!o.budget.enterLarge(o.client)) return crowded();
      large = true;
    }
    if (!o.budget.take(total, chunk.length)) return busy();
    total += chunk.length;
    hmac.update(chunk);
    chunks.push(chunk);
    return undefined;
  };
  const expected = Number.isFinite(declared) && declared >= 0 ? declared : Number.POSITIVE_INFINITY;
  try {
    if (incoming) await readIncoming(incoming, accept, () => total >= expected, o.minRate ?? MIN_BODY_RATE);
    else await readWeb(source as ReadableStream<Uint8Array>, accept);
  } catch (err) {
    o.budget.give(total);
    leave();
    throw err;
  }
  return finish(chunks, total, hmac, o, leave);
}

function finish(chunks: Buffer[], total: number, hmac: ReturnType<typeof createHmac>, o: ReadOptions, leave: () => void): SignedBody {
  const expected = hmac.digest();
  const given = Buffer.from(o.signature.slice("sha256=".length), "hex");
  const valid = given.length === expected.length && timingSafeEqual(given, expected);
  // copied out at once, even a single chunk: a chunk is a view of the socket's 64 KiB read buffer, which
  // it would keep alive (and off the V8 heap, so unseen by the scavenger) for as long as the request
  // runs; a body that failed verification is never copied
  const body = valid ? Buffer.concat(chunks, total) : Buffer.alloc(0);
  chunks.length = 0;
  let released = false;
  return {
    body,
    length: total,
    valid,
    release() {
      if (!released) {
        o.budget.give(total); // what the body took is what it received
        leave();
      }
      released = true;
    },
  };
}

/**
 * Feed node's request stream to `accept` chunk by chunk. On a refusal the stream is left alone (not
 * destroyed): node drains the rest once the answer is sent, so the client reads it instead of a
 * reset. A sender below `minRate` (after its grace) is cut: its socket is closed, nothing is drained.
 */
function readIncoming(
  incoming: IncomingMessage,
  accept: (chunk: Buffer) => HttpError | undefined,
  complete: () => boolean,
  minRate: { bytesPerSecond: number; graceMs: number },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let received = 0;
    const timer = setInterval(() => {
      const late = Date.now() - started - minRate.graceMs;
      if (late <= 0 || complete() || received >= (late / 1000) * minRate.bytesPerSecond) return;
      done(new HttpError(408, `request body arrived slower than ${minRate.bytesPerSecond} bytes/s`, { clientGone: true }));
      incoming.socket.destroy();
    }, RATE_CHECK_MS);
    const done = (err?: Error) => {
      clearInterval(timer);
      incoming.off("data", onData).off("end", onEnd).off("error", onGone).off("close", onClose);
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
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
