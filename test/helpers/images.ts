import { execFile } from "node:child_process";
import { cp, mkdtemp, mkdir, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
export const WEB_REPO = "swarmhook-test/web";

/**
 * Build `swarmhook-test/web:<sha>` locally (no registry here): busybox httpd serving /health with
 * the commit, or, with `crash`, a process that exits 1 after a second, as a broken release would.
 */
export async function buildWebImage(
  sha: string,
  opts: { crash?: boolean; host?: string; reports?: string; repo?: string; label?: string } = {},
): Promise<string> {
  const ctx = await mkdtemp(path.join(os.tmpdir(), "swarmhook-img-"));
  try {
    await mkdir(path.join(ctx, "www"));
    await writeFile(
      path.join(ctx, "www", "health"),
      `${JSON.stringify({ status: "ok", commit: opts.reports ?? sha, label: opts.label })}\n`,
    );
    const cmd = opts.crash ? `["sh", "-c", "sleep 1; exit 1"]` : `["httpd", "-f", "-p", "8080", "-h", "/www"]`;
    await writeFile(path.join(ctx, "Dockerfile"), `FROM swarmhook-test/busybox:latest\nCOPY www /www\nCMD ${cmd}\n`);
    const tag = `${opts.repo ?? WEB_REPO}:${sha}`;
    await run("docker", [...(opts.host ? ["-H", opts.host] : []), "build", "-q", "-t", tag, ctx], {
      env: { ...process.env, DOCKER_BUILDKIT: "0" },
    });
    return tag;
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}

/** The local registry scripts/test-env.sh starts (Debian's docker-registry on loopback): pushing there gives real digests. */
export const REGISTRY = "127.0.0.1:5000";
export const REGISTRY_WEB_REPO = `${REGISTRY}/swarmhook-test/web`;

/** Push `tag` to the test registry; returns its digest there (`sha256:…`). */
export async function pushImage(tag: string): Promise<string> {
  await run("docker", ["push", "-q", tag]);
  const { stdout } = await run("docker", ["image", "inspect", "-f", "{{range .RepoDigests}}{{println .}}{{end}}", tag]);
  const repo = tag.slice(0, tag.lastIndexOf(":"));
  const line = stdout.split("\n").find((l) => l.startsWith(`${repo}@`));
  if (!line) throw new Error(`no registry digest for ${tag} after push: ${stdout}`);
  return line.slice(repo.length + 1);
}

/**
 * The images stack/stack.yaml names, rendered with .env.example, but the socket proxy: it is pinned
 * by a digest no registry here has, so tests deploy it as SOCKET_PROXY_IMAGE=SOCKET_PROXY_STANDIN.
 */
export const SOCKET_PROXY_STANDIN = "swarmhook-test/socket-proxy:standin";
export const STACK_IMAGES = [
  "traefik:v3.5.3",
  "postgres:18.1-alpine",
  "ghcr.io/acme/app-api:latest",
  "ghcr.io/acme/app-frontend:latest",
  SOCKET_PROXY_STANDIN,
];

/**
 * A stand-in for images no registry here can provide: it ignores its arguments and sleeps, and its
 * node, pg_isready and wget succeed, so the stack's healthchecks pass. Tagged as each of `tags`.
 */
export async function buildStandinImage(tags: string[]): Promise<void> {
  const ctx = await mkdtemp(path.join(os.tmpdir(), "swarmhook-standin-"));
  try {
    const ok = "#!/bin/sh\nexit 0\n";
    await writeFile(path.join(ctx, "standin"), "#!/bin/sh\nexec sleep 2147483647\n", { mode: 0o755 });
    for (const tool of ["node", "pg_isready", "wget"]) await writeFile(path.join(ctx, tool), ok, { mode: 0o755 });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      'FROM swarmhook-test/busybox:latest\nCOPY standin /standin\nCOPY node pg_isready wget /usr/local/bin/\nENTRYPOINT ["/standin"]\n',
    );
    await run("docker", ["build", "-q", ...tags.flatMap((t) => ["-t", t]), ctx], { env: { ...process.env, DOCKER_BUILDKIT: "0" } });
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}

/**
 * A Node image made from this machine's own node and npm (no registry here serves `node:*`): the
 * node binary with the shared libraries ldd names, npm, and the static busybox base for sh and env,
 * as an Alpine node image offers them. Rebuilt only when node or npm change.
 * @example
 * const base = await buildNodeImage(); // swarmhook-test/node:v20.20.2
 */
export async function buildNodeImage(): Promise<string> {
  const tag = `swarmhook-test/node:${process.version}`;
  // the npm that ships with this node, where every node distribution puts it: <prefix>/lib/node_modules/npm
  const npmDir = path.resolve(path.dirname(process.execPath), "..", "lib", "node_modules", "npm");
  const { stdout: npmVersion } = await run(process.execPath, [path.join(npmDir, "bin", "npm-cli.js"), "--version"]);
  const want = `${process.version}-${npmVersion.trim()}-${(await stat(process.execPath)).size}`;
  const { stdout: have } = await run("docker", ["image", "inspect", "-f", '{{index .Config.Labels "swarmhook.node"}}', tag]).catch(() => ({
    stdout: "",
  }));
  if (have.trim() === want) return tag;
  const ctx = await mkdtemp(path.join(os.tmpdir(), "swarmhook-node-"));
  try {
    const put = async (from: string, to: string) => {
      await mkdir(path.dirname(path.join(ctx, "root", to)), { recursive: true });
      await cp(from, path.join(ctx, "root", to), { recursive: true, dereference: true });
    };
    await put(process.execPath, "/usr/local/bin/node");
    const { stdout: libs } = await run("ldd", [process.execPath]);
    for (const m of libs.matchAll(/(\/\S+) \(0x/g)) await put(m[1] as string, m[1] as string);
    await put(npmDir, "/usr/local/lib/node_modules/npm");
    // this machine's CA bundle, as a node image's ca-certificates: the npm registry may be reached only through it
    const cas = "/etc/ssl/certs/ca-certificates.crt";
    const trust = (await stat(cas).catch(() => null)) ? [`ENV NODE_EXTRA_CA_CERTS=${cas}`] : [];
    if (trust.length > 0) await put(cas, cas);
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        "FROM swarmhook-test/busybox:latest",
        "COPY root/ /",
        'RUN ["/bin/busybox", "sh", "-c", "mkdir -p /usr/bin /etc /root /tmp && chmod 1777 /tmp && ln -s /bin/busybox /usr/bin/env && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx"]',
        ...trust,
        `LABEL swarmhook.node="${want}"`,
        'CMD ["node"]',
        "",
      ].join("\n"),
    );
    await run("docker", ["build", "-q", "-t", tag, ctx], { env: { ...process.env, DOCKER_BUILDKIT: "0" }, maxBuffer: 16 * 1024 * 1024 });
    return tag;
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}
