// Registries with authentication on loopback, for the images-first tests: Debian's docker-registry with
// htpasswd (Basic) auth, or with `auth: token` behind a token service that speaks the distribution
// spec's Bearer challenge the way GHCR does (a realm issuing ES256 JWTs the registry itself verifies
// against the certificate it is given). Each on a port and data directory of its own.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createPrivateKey, randomBytes, sign, X509Certificate } from "node:crypto";
import { promises as fs } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "./postgres.ts";
import { waitFor } from "./swarm.ts";

const run = promisify(execFile);

export interface TestRegistry {
  /** host:port, e.g. 127.0.0.1:40123 */
  addr: string;
  user: string;
  password: string;
  /** A DOCKER_CONFIG directory logged in to this registry (`docker login`). */
  dockerConfig: string;
  /** A DOCKER_CONFIG directory with no credentials. */
  emptyConfig: string;
  /** Stop the registry process (its data stays until `remove`). */
  stop(): Promise<void>;
  /** Start it again on the same port and data. */
  start(): Promise<void>;
  /** Stop it and remove everything it made. */
  remove(): Promise<void>;
  /** Token requests the token service answered (token mode), for assertions. */
  tokenRequests: { scope: string | null; authenticated: boolean; grant?: string }[];
  /** An identity token the token service takes as a refresh-token grant (token mode), as `docker login` stores for OAuth registries. */
  identityToken: string;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/** The token service: Basic credentials checked, then an ES256 JWT granting the asked scope (anonymous: nothing). */
async function startTokenService(
  dir: string,
  user: string,
  password: string,
  identityToken: string,
  requests: TestRegistry["tokenRequests"],
) {
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-subj",
    "/CN=swarmhook-test-token",
    "-days",
    "2",
    "-keyout",
    path.join(dir, "token.key"),
    "-out",
    path.join(dir, "token.crt"),
  ]);
  const key = createPrivateKey(await fs.readFile(path.join(dir, "token.key")));
  const cert = new X509Certificate(await fs.readFile(path.join(dir, "token.crt")));
  const port = await freePort();
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => void (body += c.toString()));
    req.on("end", () => answer(req, res, body));
  });
  const answer = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => {
    const url = new URL(req.url ?? "/", "http://x");
    // the distribution spec's OAuth2 form: a refresh-token grant POSTed, or a GET with Basic credentials
    const form = req.method === "POST" ? new URLSearchParams(body) : null;
    const given = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /, ""), "base64").toString();
    const authenticated = form
      ? form.get("grant_type") === "refresh_token" && form.get("refresh_token") === identityToken
      : given === `${user}:${password}`;
    const scope = form ? form.get("scope") : url.searchParams.get("scope");
    requests.push({ scope, authenticated, ...(form ? { grant: form.get("grant_type") ?? "" } : {}) });
    if ((req.headers.authorization || form) && !authenticated) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
      return;
    }
    const access = [];
    const m = scope ? /^repository:([^:]+):(.+)$/.exec(scope) : null;
    if (m && authenticated) access.push({ type: "repository", name: m[1], actions: (m[2] as string).split(",") });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg: "ES256", x5c: [cert.raw.toString("base64")] };
    const claims = {
      iss: "swarmhook-test-issuer",
      sub: authenticated ? user : "",
      aud: "swarmhook-test-registry",
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString("hex"),
      access,
    };
    const signing = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${signing}.${b64url(sign("sha256", Buffer.from(signing), { key, dsaEncoding: "ieee-p1363" }))}`;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
  };
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return { realm: `http://127.0.0.1:${port}/token`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/**
 * Start Debian's docker-registry on a free loopback port with authentication: `htpasswd` (Basic) or
 * `token` (Bearer, as GHCR). Returns its address, the test user's credentials and a DOCKER_CONFIG
 * logged in to it through the real `docker login`.
 */
export async function startAuthRegistry(mode: "htpasswd" | "token", o: { host?: string; dockerHost?: string } = {}): Promise<TestRegistry> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `swarmhook-registry-${mode}-`));
  const user = "deployer";
  const password = randomBytes(12).toString("hex");
  const port = await freePort();
  const addr = `${o.host ?? "127.0.0.1"}:${port}`;
  const tokenRequests: TestRegistry["tokenRequests"] = [];
  const identityToken = randomBytes(16).toString("hex");
  let token: Awaited<ReturnType<typeof startTokenService>> | undefined;
  let auth: string;
  if (mode === "htpasswd") {
    const { stdout } = await run("htpasswd", ["-Bbn", user, password]);
    await fs.writeFile(path.join(dir, "htpasswd"), stdout);
    auth = `auth: { htpasswd: { realm: swarmhook-test, path: ${path.join(dir, "htpasswd")} } }`;
  } else {
    token = await startTokenService(dir, user, password, identityToken, tokenRequests);
    auth = `auth: { token: { realm: "${token.realm}", service: swarmhook-test-registry, issuer: swarmhook-test-issuer, rootcertbundle: ${path.join(dir, "token.crt")} } }`;
  }
  const config = path.join(dir, "config.yml");
  await fs.writeFile(
    config,
    [
      "version: 0.1",
      "log: { level: warn }",
      `storage: { filesystem: { rootdirectory: ${path.join(dir, "data")} }, delete: { enabled: true } }`,
      `http: { addr: ${addr} }`,
      auth,
      "",
    ].join("\n"),
  );
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr?.on("data", (c: Buffer) => void (err = (err + c.toString()).slice(-4000)));
    await waitFor(
      `registry on ${addr}`,
      async () => {
        if (child?.exitCode !== null) throw new Error(`docker-registry exited: ${err}`);
        const r = await fetch(`http://${addr}/v2/`).catch(() => null);
        return r && r.status === 401 ? true : undefined;
      },
      15_000,
      100,
    );
  };
  const stop = async () => {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child?.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  };
  await start();
  const dockerConfig = path.join(dir, "docker-config");
  const emptyConfig = path.join(dir, "docker-config-empty");
  await fs.mkdir(emptyConfig, { recursive: true });
  await login(addr, user, password, dockerConfig, o.dockerHost);
  return {
    addr,
    user,
    password,
    dockerConfig,
    emptyConfig,
    stop,
    start,
    tokenRequests,
    identityToken,
    async remove() {
      await stop();
      await token?.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** `docker login` with the password on stdin, into `dockerConfig`. */
async function login(addr: string, user: string, password: string, dockerConfig: string, dockerHost?: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn("docker", ["login", "--username", user, "--password-stdin", addr], {
      env: { ...process.env, DOCKER_CONFIG: dockerConfig, ...(dockerHost ? { DOCKER_HOST: dockerHost } : {}) },
      stdio: ["pipe", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (c: Buffer) => void (err += c.toString()));
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`docker login ${addr} failed: ${err}`))));
    child.stdin.end(password);
  });
}

/** Tag a local image into `registry` as `repo:tag` and push it with `dockerConfig`'s credentials; returns the pushed digest. */
export async function pushTo(registry: TestRegistry, local: string, repo: string, tag: string, dockerHost?: string): Promise<string> {
  const ref = `${registry.addr}/${repo}:${tag}`;
  const env = { ...process.env, DOCKER_CONFIG: registry.dockerConfig, ...(dockerHost ? { DOCKER_HOST: dockerHost } : {}) };
  await run("docker", ["tag", local, ref], { env });
  const { stdout } = await run("docker", ["push", ref], { env });
  const m = /digest: (sha256:[0-9a-f]{64})/.exec(stdout);
  if (!m) throw new Error(`no digest in docker push output: ${stdout}`);
  return m[1] as string;
}
