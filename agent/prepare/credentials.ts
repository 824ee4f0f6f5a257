import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { allowedEnv } from "../docker.ts";

/** What the watcher may send a registry for one host: a password (or token) for its user, or an identity token. */
export type Credential = { username: string; password: string } | { identityToken: string };

/** Where credentials come from: the Docker CLI's config on this node, asked per registry host. */
export type CredentialSource = (registry: string) => Promise<Credential | undefined>;

const MAX_CONFIG_BYTES = 1 << 20;
const HELPER_TIMEOUT_MS = 5_000;
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const AuthEntry = z
  .object({
    auth: z.string().optional(),
    username: z.string().optional(),
    password: z.string().optional(),
    identitytoken: z.string().optional(),
  })
  .loose();
const DockerConfig = z
  .object({
    auths: z.record(z.string(), AuthEntry).optional(),
    credsStore: z.string().optional(),
    credHelpers: z.record(z.string(), z.string()).optional(),
  })
  .loose();
const HelperAnswer = z.object({ Username: z.string(), Secret: z.string() }).loose();

/** The keys Docker stores one registry's credentials under: Docker Hub's is its old index URL. */
function keysOf(registry: string): string[] {
  if (registry === "docker.io") return ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"];
  return [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`, `https://${registry}/v2/`];
}

/** An error that says what failed and never carries a credential. */
class CredentialError extends Error {}

/** What a helper sees: docker's allow-list, and where `pass` and GnuPG keep their stores. */
const helperEnv = () => ({
  ...allowedEnv(process.env),
  ...Object.fromEntries(
    Object.entries(process.env).filter(([k]) => /^(GNUPGHOME|PASSWORD_STORE_[A-Z_]+|DBUS_SESSION_BUS_ADDRESS)$/.test(k)),
  ),
});

/** `docker-credential-<helper> get`, the helper protocol: the server URL on stdin, JSON on stdout. */
function askHelper(helper: string, serverUrl: string): Promise<Credential | undefined> {
  if (!HELPER_NAME.test(helper))
    return Promise.reject(new CredentialError(`credential helper name ${JSON.stringify(helper)} is not valid`));
  return new Promise((resolve, reject) => {
    const child = execFile(
      `docker-credential-${helper}`,
      ["get"],
      { timeout: HELPER_TIMEOUT_MS, maxBuffer: 64 * 1024, env: helperEnv() },
      (err, stdout) => {
        // the helper answers "credentials not found" on stdout with a non-zero exit: no credential, not a failure
        if (err && /credentials not found/i.test(String(stdout))) return resolve(undefined);
        if (err) {
          const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "not installed" : err.killed ? "timed out" : `exit ${err.code}`;
          return reject(new CredentialError(`credential helper docker-credential-${helper} failed (${why})`));
        }
        let parsed: z.infer<typeof HelperAnswer>;
        try {
          parsed = HelperAnswer.parse(JSON.parse(stdout));
        } catch {
          return reject(new CredentialError(`credential helper docker-credential-${helper} answered something other than its JSON`));
        }
        resolve(parsed.Username === "<token>" ? { identityToken: parsed.Secret } : { username: parsed.Username, password: parsed.Secret });
      },
    );
    child.stdin?.end(serverUrl);
  });
}

function fromEntry(entry: z.infer<typeof AuthEntry>): Credential | undefined {
  if (entry.identitytoken) return { identityToken: entry.identitytoken };
  if (entry.auth) {
    const plain = Buffer.from(entry.auth, "base64").toString("utf8");
    const i = plain.indexOf(":");
    if (i > 0) return { username: plain.slice(0, i), password: plain.slice(i + 1) };
  }
  if (entry.username && entry.password) return { username: entry.username, password: entry.password };
  return undefined;
}

/**
 * The credentials the Docker CLI on this node would use for a registry, read as the CLI reads them:
 * `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), a `credHelpers` entry for the host,
 * else `credsStore`, else the file's own `auths` entry. Read afresh for each deploy, so a
 * `docker login` takes effect at once. A missing file means no credentials; an unreadable one, or
 * a helper that fails, is an error whose message names the file or helper and holds no secret.
 * @example
 * const creds = dockerCredentials();
 * const c = await creds("ghcr.io"); // { username, password } | { identityToken } | undefined
 */
export function dockerCredentials(env: NodeJS.ProcessEnv = process.env): CredentialSource {
  const file = path.join(env.DOCKER_CONFIG || path.join(os.homedir(), ".docker"), "config.json");
  return async (registry) => {
    let text: string;
    try {
      const handle = await fs.open(file, "r");
      try {
        const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
        const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
        if (bytesRead > MAX_CONFIG_BYTES) throw new CredentialError(`${file} is larger than 1 MiB`);
        text = buf.subarray(0, bytesRead).toString("utf8");
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      if (err instanceof CredentialError) throw err;
      throw new CredentialError(`${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
    }
    let config: z.infer<typeof DockerConfig>;
    try {
      config = DockerConfig.parse(JSON.parse(text));
    } catch {
      throw new CredentialError(`${file} is not a Docker CLI config (JSON with auths, credsStore, credHelpers)`);
    }
    const keys = keysOf(registry);
    const helper = keys.map((k) => config.credHelpers?.[k]).find(Boolean) ?? config.credsStore;
    if (helper) return askHelper(helper, keys[0] as string);
    for (const k of keys) {
      const entry = config.auths?.[k];
      const found = entry && fromEntry(entry);
      if (found) return found;
    }
    return undefined;
  };
}
