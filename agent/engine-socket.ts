import http, { type IncomingMessage } from "node:http";
import { readAtMost } from "../lib/bounded.ts";
import type { DockerRunner } from "./docker.ts";

/** The most an engine answer may hold (as the CLI runner's maxBuffer). */
const MAX_BYTES = 64 * 1024 * 1024;
const TIMEOUT_MS = 30_000;

/** Read-only GETs on the engine's API, for the reconcile loop's snapshot (no docker CLI process per pass). */
export interface EngineReader {
  /** The socket it reads, for the log. */
  socket: string;
  /** The parsed JSON answer of GET `path`, or null on a 404; throws on any other status, a bad answer, or no answer in 30 s. */
  get(path: string): Promise<unknown>;
}

/**
 * The engine the docker CLI would talk to, when that is a local unix socket: the CLI is asked
 * once (`docker context inspect`, which honours DOCKER_HOST, DOCKER_CONTEXT and the CLI's config),
 * so a reader never reaches another engine than the CLI. Null for a TCP or SSH endpoint, or when
 * the CLI cannot say (a scripted docker): the caller keeps using the CLI.
 * @example
 * const engine = await localEngine(docker); const services = engine ? await engine.get("/services") : null;
 */
export async function localEngine(docker: DockerRunner): Promise<EngineReader | null> {
  const r = await docker.capture(["context", "inspect", "--format", "{{.Endpoints.docker.Host}}"], { timeoutMs: 15_000 });
  const host = r.exitCode === 0 ? r.stdout.trim() : "";
  if (!host.startsWith("unix://")) return null;
  return engineReader(host.slice("unix://".length));
}

/** A reader of the engine API on the unix socket `socket`; one small keep-alive pool, bounded answers. */
export function engineReader(socket: string): EngineReader {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4, timeout: TIMEOUT_MS });
  const get = async (p: string): Promise<unknown> => {
    let late: Error | undefined;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = http.get({ socketPath: socket, path: p, agent, headers: { host: "docker" }, timeout: TIMEOUT_MS }, resolve);
      // the socket's idle timeout covers the answer's body too: destroying the request ends its read
      req.on("timeout", () => req.destroy((late = new Error(`engine API ${p}: no answer within ${TIMEOUT_MS / 1000} s`))));
      req.on("error", reject);
    });
    const bytes = await readAtMost(res, MAX_BYTES, () => new Error(`engine API ${p}: answer over ${MAX_BYTES} bytes`)).catch(
      (err: Error) => Promise.reject(late ?? err), // a body cut by the timeout says so, not "aborted"
    );
    const body = bytes.toString("utf8");
    if (res.statusCode === 404) return null;
    if (res.statusCode !== 200) throw new Error(`engine API ${p}: HTTP ${res.statusCode}: ${body.slice(0, 200).trim()}`);
    try {
      return JSON.parse(body);
    } catch {
      throw new Error(`engine API ${p}: not JSON`);
    }
  };
  return { socket, get };
}
