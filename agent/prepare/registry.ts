import { createHash } from "node:crypto";
import { readAtMost } from "../../lib/bounded.ts";
import type { Credential, CredentialSource } from "./credentials.ts";
import { apiHost, type ImageRef } from "./image-ref.ts";

/** What a registry said about one image reference. */
export type Lookup =
  | { kind: "digest"; digest: string }
  /** The registry answered that the tag (or digest) is not there: manifest unknown, 404. */
  | { kind: "not_found"; detail: string }
  /** Credentials missing, refused or not allowed to pull: 401/403. */
  | { kind: "unauthorized"; detail: string }
  /** No usable answer: connection refused, timeout, TLS, 5xx after retries. */
  | { kind: "unreachable"; detail: string };

export interface RegistryOptions {
  credentials: CredentialSource;
  /** Whether Docker treats the registry as insecure (plain HTTP): 127.0.0.0/8 and `docker info`'s insecure registries. */
  insecure: (registry: string) => Promise<boolean>;
  /** Bound on each HTTP request (default 5 s). */
  timeoutMs?: number;
  /** Attempts after the first on 5xx, 429, timeouts and network errors (default 2). */
  retries?: number;
  /** Bound on one lookup, every request and retry in it together (default 10 s): a dead registry stalls no deploy longer. */
  budgetMs?: number;
  /** Called once per HTTP exchange with the registry, for metrics. */
  onRequest?: (registry: string, outcome: string) => void;
}

/** Every manifest type a tag may point at; an index or list resolves to its own digest (what Swarm pins). */
const ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
].join(", ");
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MAX_MANIFEST_BYTES = 4 << 20;
const MAX_TOKEN_BYTES = 64 << 10;

/** The parameters of a `WWW-Authenticate` challenge: `Bearer realm="…",service="…",scope="…"`. */
export function parseChallenge(header: string | null): { scheme: string; params: Record<string, string> } | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of (m[2] ?? "").matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g))
    params[(p[1] as string).toLowerCase()] = (p[2] ?? p[3] ?? "").replace(/\\(.)/g, "$1");
  return { scheme: (m[1] as string).toLowerCase(), params };
}

const basic = (c: { username: string; password: string }) => `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;

class Unusable extends Error {
  constructor(
    readonly kind: "unauthorized" | "unreachable",
    message: string,
  ) {
    super(message);
  }
}

/** Read a body up to `max` bytes; more is an error, not a truncation. */
function boundedBody(res: Response, max: number): Promise<Buffer> {
  const body = (res.body ?? []) as AsyncIterable<Uint8Array>;
  return readAtMost(body, max, () => new Unusable("unreachable", `answer larger than ${max} bytes`));
}

/** One client's settings and its cache of pull tokens. */
interface Ctx {
  o: RegistryOptions;
  timeoutMs: number;
  retries: number;
  budgetMs: number;
  /** When the lookup under way must have its answer (Date.now() time). */
  deadline: number;
  tokens: Map<string, { value: string; until: number }>;
}

/** One HTTP exchange, time-bounded, retried on 5xx, 429, timeouts and network errors. */
async function request(c: Ctx, registry: string, url: string, init: RequestInit): Promise<Response> {
  let last = `no answer within the lookup's ${c.budgetMs / 1000} s`;
  let n = 0;
  for (; n <= c.retries; n++) {
    const pause = n > 0 ? 250 * 2 ** n : 0;
    if (c.deadline - Date.now() - pause < 100) break; // the lookup's budget is spent
    if (pause > 0) await new Promise((r) => setTimeout(r, pause));
    const bound = Math.min(c.timeoutMs, c.deadline - Date.now());
    let res: Response;
    try {
      res = await fetch(url, { ...init, redirect: "follow", signal: AbortSignal.timeout(bound) });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      last =
        e.name === "TimeoutError" ? `no answer within ${(bound / 1000).toFixed(1)} s` : (e.cause?.code ?? e.cause?.message ?? e.message);
      c.o.onRequest?.(registry, e.name === "TimeoutError" ? "timeout" : "error");
      continue;
    }
    c.o.onRequest?.(registry, String(res.status));
    if (res.status < 500 && res.status !== 429) return res;
    last = `HTTP ${res.status}`;
    await res.body?.cancel();
  }
  throw new Unusable("unreachable", `${registry}: ${last}${n > 1 ? ` (after ${n} attempts)` : ""}`);
}

/** Ask the realm for a token: a refresh-token grant for an identity token, else a GET with Basic credentials or none. */
function askToken(c: Ctx, registry: string, realm: URL, params: Record<string, string>, cred: Credential | undefined) {
  if (cred && "identityToken" in cred) {
    const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: cred.identityToken, client_id: "swarmhook" });
    if (params.service) form.set("service", params.service);
    if (params.scope) form.set("scope", params.scope);
    return request(c, registry, realm.href, { method: "POST", body: form });
  }
  if (params.service) realm.searchParams.set("service", params.service);
  if (params.scope) realm.searchParams.set("scope", params.scope);
  return request(c, registry, realm.href, { headers: cred ? { authorization: basic(cred) } : {} });
}

/** A pull token from the challenge's realm, with the node's credentials when it has them. */
async function bearer(c: Ctx, registry: string, scheme: string, params: Record<string, string>, cred: Credential | undefined) {
  const realm = params.realm ? URL.parse(params.realm) : null;
  if (!realm || !/^https?:$/.test(realm.protocol)) throw new Unusable("unreachable", `${registry}: the token realm is not an http(s) URL`);
  // credentials go to an https realm, or to a plain-http one only when the registry itself is plain http
  const share = realm.protocol === "https:" || scheme === "http" ? cred : undefined;
  const key = `${realm.href} ${params.service ?? ""} ${params.scope ?? ""} ${share ? "with" : "without"}`;
  const cached = c.tokens.get(key);
  if (cached && cached.until > Date.now()) return cached.value;
  const res = await askToken(c, registry, realm, params, share);
  if (res.status === 401 || res.status === 403) {
    await res.body?.cancel();
    throw new Unusable(
      "unauthorized",
      `${registry}: the token service refused ${share ? "the credentials" : "an anonymous pull"} (HTTP ${res.status})`,
    );
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new Unusable("unreachable", `${registry}: the token service answered HTTP ${res.status}`);
  }
  let answer: { token?: unknown; access_token?: unknown; expires_in?: unknown };
  try {
    answer = JSON.parse((await boundedBody(res, MAX_TOKEN_BYTES)).toString("utf8")) as typeof answer;
  } catch {
    throw new Unusable("unreachable", `${registry}: the token service answered something other than JSON`);
  }
  const value = typeof answer.token === "string" ? answer.token : typeof answer.access_token === "string" ? answer.access_token : "";
  if (!value) throw new Unusable("unreachable", `${registry}: the token service answered no token`);
  const life = typeof answer.expires_in === "number" && answer.expires_in > 0 ? answer.expires_in : 60;
  c.tokens.set(key, { value, until: Date.now() + Math.min(life, 300) * 1000 - 5_000 });
  return value;
}

/** The digest of the manifest: the registry's `Docker-Content-Digest`, or the hash of the manifest's bytes (a bounded GET). */
async function digestOf(c: Ctx, registry: string, url: string, res: Response, headers: Record<string, string>): Promise<string> {
  const said = res.headers.get("docker-content-digest");
  if (said && DIGEST.test(said)) return said;
  const full = await request(c, registry, url, { headers });
  if (!full.ok) throw new Unusable("unreachable", `${registry}: the manifest GET answered HTTP ${full.status}`);
  const bytes = await boundedBody(full, MAX_MANIFEST_BYTES);
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Authorization for a second try after a 401, or a Lookup when there is none to give. */
async function authorize(c: Ctx, ref: ImageRef, scheme: string, challenge: ReturnType<typeof parseChallenge>) {
  const cred = await c.o.credentials(ref.registry).catch((err: Error) => {
    throw new Unusable("unauthorized", err.message);
  });
  if (challenge?.scheme === "bearer") return { cred, header: `Bearer ${await bearer(c, ref.registry, scheme, challenge.params, cred)}` };
  // plain http only to a registry Docker itself treats as insecure, as the CLI does
  if (challenge?.scheme === "basic" && cred && "username" in cred) return { cred, header: basic(cred) };
  return { cred, header: undefined };
}

async function lookupOnce(c: Ctx, ref: ImageRef): Promise<Lookup> {
  const host = apiHost(ref.registry);
  const scheme = (await c.o.insecure(ref.registry)) ? "http" : "https";
  const url = `${scheme}://${host}/v2/${ref.repository}/manifests/${ref.digest ?? ref.tag ?? "latest"}`;
  const headers: Record<string, string> = { accept: ACCEPT };
  let res = await request(c, ref.registry, url, { method: "HEAD", headers });
  if (res.status === 401) {
    const { cred, header } = await authorize(c, ref, scheme, parseChallenge(res.headers.get("www-authenticate")));
    if (!header) return { kind: "unauthorized", detail: `${ref.registry}: authentication required and no credentials for it on this node` };
    headers.authorization = header;
    res = await request(c, ref.registry, url, { method: "HEAD", headers });
    if (res.status === 401)
      return {
        kind: "unauthorized",
        detail: `${ref.registry}: the registry refused ${cred ? "the credentials" : "an anonymous pull"} (HTTP 401)`,
      };
  }
  if (res.status === 403) return { kind: "unauthorized", detail: `${ref.registry}: pull of ${ref.repository} denied (HTTP 403)` };
  if (res.status === 404) return { kind: "not_found", detail: `${ref.registry}: manifest unknown (HTTP 404)` };
  if (!res.ok) return { kind: "unreachable", detail: `${ref.registry}: HTTP ${res.status}` };
  const digest = await digestOf(c, ref.registry, url, res, headers);
  if (ref.digest && digest !== ref.digest) return { kind: "unreachable", detail: `${ref.registry}: answered ${digest} for ${ref.digest}` };
  return { kind: "digest", digest };
}

/**
 * A registry client that asks one question: which digest does this reference name now? A HEAD (or,
 * when the registry sends no `Docker-Content-Digest`, a bounded GET whose bytes are hashed) of
 * `/v2/<repository>/manifests/<tag>`, with the distribution spec's authentication: a `Basic`
 * challenge answered with the node's credentials, a `Bearer` challenge (GHCR, Docker Hub) by a
 * pull token from its realm. Every request is time-bounded and retried on 5xx, 429, timeouts and
 * network errors; no credential or token appears in any detail it returns.
 * @example
 * const registry = createRegistryClient({ credentials: dockerCredentials(), insecure: async (h) => h.startsWith("127.") });
 * const r = await registry.lookup(parseImageRef("ghcr.io/acme/app:v1")); // { kind: "digest", digest: "sha256:…" }
 */
export function createRegistryClient(o: RegistryOptions): RegistryClient {
  const c: Ctx = {
    o,
    timeoutMs: o.timeoutMs ?? 5_000,
    retries: o.retries ?? 2,
    budgetMs: o.budgetMs ?? 10_000,
    deadline: 0,
    tokens: new Map(),
  };
  return {
    /** Which digest `ref` names now, or why that cannot be told. Never throws. */
    async lookup(ref: ImageRef): Promise<Lookup> {
      try {
        return await lookupOnce({ ...c, deadline: Date.now() + c.budgetMs }, ref);
      } catch (err) {
        if (err instanceof Unusable) return { kind: err.kind, detail: err.message };
        return { kind: "unreachable", detail: `${ref.registry}: ${(err as Error).message}` };
      }
    },
  };
}

/** What a deploy asks of registries. */
export interface RegistryClient {
  lookup(ref: ImageRef): Promise<Lookup>;
}
