import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import pg from "pg";

export interface TestPostgres {
  url: string;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** False when DATABASE_URL points at a server this helper did not start. */
  controllable: boolean;
  stop(): Promise<void>;
  start(): Promise<void>;
  cleanup(): Promise<void>;
}

const PASSWORD = "swarmhook-test-pw";

function pgBinDir(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(path.join(root, v, "bin", "initdb"))) return path.join(root, v, "bin");
  throw new Error("initdb not found under /usr/lib/postgresql: run scripts/test-env.sh (apt-get install postgresql)");
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitReady(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    try {
      await client.connect();
      await client.query("select 1");
      await client.end();
      return;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`postgres not ready at ${url.replace(PASSWORD, "***")}: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * A real, throwaway Postgres: initdb in /tmp/swarmhook-pg-* as the postgres user, on a free port,
 * password auth over TCP. DATABASE_URL, when set, is used instead (and cannot be stopped).
 */
export async function startPostgres(env: NodeJS.ProcessEnv = process.env): Promise<TestPostgres> {
  if (env.DATABASE_URL) {
    const u = new URL(env.DATABASE_URL);
    await waitReady(env.DATABASE_URL);
    const fixed = async () => {
      throw new Error("DATABASE_URL points at an external server: this helper cannot stop or start it");
    };
    return {
      url: env.DATABASE_URL,
      host: u.hostname,
      port: Number(u.port || 5432),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      database: u.pathname.slice(1),
      controllable: false,
      stop: fixed,
      start: fixed,
      cleanup: async () => undefined,
    };
  }
  const bin = pgBinDir();
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  const dir = mkdtempSync("/tmp/swarmhook-pg-");
  chownSync(dir, uid, gid);
  chmodSync(dir, 0o700);
  const pwfile = path.join(dir, "pw");
  writeFileSync(pwfile, `${PASSWORD}\n`);
  chownSync(pwfile, uid, gid);
  const data = path.join(dir, "data");
  execFileSync(
    path.join(bin, "initdb"),
    ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${pwfile}`, "-E", "UTF8", "--no-sync"],
    { uid, gid, stdio: "ignore" },
  );
  const port = await freePort();
  const url = `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn(
      path.join(bin, "postgres"),
      ["-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
      { uid, gid, stdio: "ignore" },
    );
    await waitReady(url);
  };
  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGINT"); // fast shutdown: active connections are cut, as when the server dies
    await exited;
  };
  await start();
  return {
    url,
    host: "127.0.0.1",
    port,
    user: "postgres",
    password: PASSWORD,
    database: "postgres",
    controllable: true,
    stop,
    start,
    cleanup: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
