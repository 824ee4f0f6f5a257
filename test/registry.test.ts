// The registry client against real registries on loopback: Debian's docker-registry with htpasswd
// (Basic) auth, and with `auth: token` behind a token service speaking GHCR's Bearer challenge. Every
// digest is checked against what `docker push` printed; credentials come from a DOCKER_CONFIG made by
// the real `docker login`, and from a credential helper speaking the docker-credential-* protocol.
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFile } from "node:child_process";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { pino } from "pino";
import type { DockerRunner } from "../agent/docker.ts";
import { dockerCredentials } from "../agent/prepare/credentials.ts";
import { resolveImages } from "../agent/prepare/images.ts";
import { systemClock } from "../lib/clock.ts";
import { parseImageRef } from "../agent/prepare/image-ref.ts";
import { createRegistryClient, type Lookup } from "../agent/prepare/registry.ts";
import { WEB_REPO, buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { pushTo, startAuthRegistry, type TestRegistry } from "./helpers/registry.ts";

const run = promisify(execFile);
const BASE = "swarmhook-test/busybox:latest";
const insecure = async () => true; // loopback: Docker asks it over plain HTTP

for (const mode of ["htpasswd", "token"] as const) {
  describe(`registry client against docker-registry with ${mode} auth`, { timeout: 120_000 }, () => {
    let reg: TestRegistry;
    let digest: string;
    before(async () => {
      reg = await startAuthRegistry(mode);
      digest = await pushTo(reg, BASE, "acme/app", "v1");
    });
    after(async () => reg?.remove());

    const lookup = (image: string, config: string, extra: Partial<Parameters<typeof createRegistryClient>[0]> = {}): Promise<Lookup> =>
      createRegistryClient({ credentials: dockerCredentials({ DOCKER_CONFIG: config }), insecure, timeoutMs: 3000, ...extra }).lookup(
        parseImageRef(image),
      );

    it("resolves a pushed tag to the digest docker push printed, with docker login's credentials", async () => {
      assert.deepEqual(await lookup(`${reg.addr}/acme/app:v1`, reg.dockerConfig), { kind: "digest", digest });
      if (mode === "token") assert.ok(reg.tokenRequests.some((r) => r.authenticated && r.scope === "repository:acme/app:pull"));
    });

    it("resolves a reference by digest, and says not_found for a tag never pushed", async () => {
      assert.deepEqual(await lookup(`${reg.addr}/acme/app:v1@${digest}`, reg.dockerConfig), { kind: "digest", digest });
      const missing = await lookup(`${reg.addr}/acme/app:never`, reg.dockerConfig);
      assert.equal(missing.kind, "not_found", JSON.stringify(missing));
    });

    it("without docker login: unauthorized, saying so, and no credential in the answer", async () => {
      const r = await lookup(`${reg.addr}/acme/app:v1`, reg.emptyConfig);
      assert.equal(r.kind, "unauthorized", JSON.stringify(r));
      assert.doesNotMatch(JSON.stringify(r), new RegExp(reg.password));
    });

    it("with a wrong password: unauthorized, and neither password appears", async () => {
      const wrong = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-wrong-"));
      const bad = "not-the-password-0123";
      await fs.writeFile(
        path.join(wrong, "config.json"),
        JSON.stringify({ auths: { [reg.addr]: { auth: Buffer.from(`${reg.user}:${bad}`).toString("base64") } } }),
      );
      const r = await lookup(`${reg.addr}/acme/app:v1`, wrong);
      await fs.rm(wrong, { recursive: true });
      assert.equal(r.kind, "unauthorized", JSON.stringify(r));
      assert.doesNotMatch(JSON.stringify(r), new RegExp(`${bad}|${reg.password}`));
    });

    if (mode === "token")
      it("an identitytoken in config.json is used as a refresh-token grant, and never appears in an answer", async () => {
        const dir = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-idtoken-"));
        await fs.writeFile(path.join(dir, "config.json"), JSON.stringify({ auths: { [reg.addr]: { identitytoken: reg.identityToken } } }));
        try {
          assert.deepEqual(await lookup(`${reg.addr}/acme/app:v1`, dir), { kind: "digest", digest });
          assert.ok(reg.tokenRequests.some((r) => r.grant === "refresh_token" && r.authenticated));
          await fs.writeFile(
            path.join(dir, "config.json"),
            JSON.stringify({ auths: { [reg.addr]: { identitytoken: "revoked-0123456789" } } }),
          );
          const refused = await lookup(`${reg.addr}/acme/app:v1`, dir);
          assert.equal(refused.kind, "unauthorized", JSON.stringify(refused));
          assert.doesNotMatch(JSON.stringify(refused), /revoked-0123456789/);
        } finally {
          await fs.rm(dir, { recursive: true });
        }
      });

    for (const how of ["credsStore", "credHelpers"] as const)
      it(`reads credentials through a ${how} helper (the docker-credential-* protocol)`, async () => {
        const dir = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-helper-"));
        const asked = path.join(dir, "asked");
        // a helper as `pass` or `secretservice` are: `get` reads the server URL on stdin, answers JSON
        await fs.writeFile(
          path.join(dir, "docker-credential-swarmhooktest"),
          `#!/bin/sh\n[ "$1" = get ] || exit 1\nread -r server\nprintf '%s' "$server" > ${asked}\n` +
            `[ "$server" = "${reg.addr}" ] || { echo "credentials not found in native keychain"; exit 1; }\n` +
            `printf '{"ServerURL":"%s","Username":"${reg.user}","Secret":"${reg.password}"}' "$server"\n`,
          { mode: 0o755 },
        );
        const config =
          how === "credsStore"
            ? { credsStore: "swarmhooktest", auths: { [reg.addr]: {} } }
            : { credHelpers: { [reg.addr]: "swarmhooktest" } };
        await fs.writeFile(path.join(dir, "config.json"), JSON.stringify(config));
        const saved = process.env.PATH;
        process.env.PATH = `${dir}:${saved ?? ""}`;
        try {
          assert.deepEqual(await lookup(`${reg.addr}/acme/app:v1`, dir), { kind: "digest", digest });
          assert.equal(await fs.readFile(asked, "utf8"), reg.addr);
        } finally {
          process.env.PATH = saved;
          await fs.rm(dir, { recursive: true });
        }
      });

    it("a manifest list resolves to the list's own digest (what Swarm pins), not a member's", async () => {
      const env = { ...process.env, DOCKER_CONFIG: reg.dockerConfig };
      const list = `${reg.addr}/acme/app:multi`;
      await run("docker", ["manifest", "create", "--insecure", list, `${reg.addr}/acme/app@${digest}`], { env });
      const { stdout } = await run("docker", ["manifest", "push", "--insecure", "--purge", list], { env });
      const pushed = /sha256:[0-9a-f]{64}/.exec(stdout)?.[0];
      assert.ok(pushed, `docker manifest push printed a digest: ${stdout}`);
      assert.notEqual(pushed, digest);
      assert.deepEqual(await lookup(list, reg.dockerConfig), { kind: "digest", digest: pushed });
    });

    it("a stopped registry is unreachable, within the bound on its requests", async () => {
      await reg.stop();
      try {
        const started = performance.now();
        const r = await lookup(`${reg.addr}/acme/app:v1`, reg.dockerConfig, { retries: 1 });
        assert.equal(r.kind, "unreachable", JSON.stringify(r));
        assert.match(r.kind === "unreachable" ? r.detail : "", /ECONNREFUSED/);
        assert.ok(performance.now() - started < 10_000);
      } finally {
        await reg.start();
      }
    });

    it("a moved tag resolves to the new digest", async () => {
      const sha = randomSha();
      await buildWebImage(sha);
      const other = await pushTo(reg, `${WEB_REPO}:${sha}`, "acme/app", "v1");
      assert.notEqual(other, digest);
      assert.deepEqual(await lookup(`${reg.addr}/acme/app:v1`, reg.dockerConfig), { kind: "digest", digest: other });
    });
  });
}

describe("a registry that accepts connections and never answers", () => {
  it("each lookup ends within its budget, and a stack's images are asked at once, not one after another", async () => {
    const sockets = new Set<net.Socket>();
    const blackhole = net.createServer((sock) => void sockets.add(sock)); // accepts, never answers
    await new Promise<void>((r) => blackhole.listen(0, "127.0.0.1", r));
    const addr = `127.0.0.1:${(blackhole.address() as net.AddressInfo).port}`;
    try {
      const registry = createRegistryClient({ credentials: async () => undefined, insecure, timeoutMs: 1000, retries: 2, budgetMs: 2500 });
      let started = performance.now();
      const one = await registry.lookup(parseImageRef(`${addr}/acme/app:v1`));
      const took = performance.now() - started;
      assert.equal(one.kind, "unreachable", JSON.stringify(one));
      assert.match(one.kind === "unreachable" ? one.detail : "", /no answer within/);
      assert.ok(took >= 2000 && took < 3500, `one lookup took ${took.toFixed(0)} ms for a 2.5 s budget`);

      const docker: DockerRunner = {
        run: () => Promise.reject(new Error("not used")),
        capture: () => Promise.reject(new Error("images naming a registry host are not looked up in the engine")),
      };
      started = performance.now();
      const r = await resolveImages(
        { docker, registry, log: pino({ level: "silent" }), clock: systemClock, policy: { digestPolicy: "warn", imageWaitMs: 0 } },
        ["api", "web", "worker"].map((service) => ({ service, image: `${addr}/acme/${service}:v1` })),
      );
      const all = performance.now() - started;
      assert.equal(r.status, "resolved");
      assert.equal(r.status === "resolved" ? r.warnings.length : 0, 3);
      assert.ok(all < 3500, `three images took ${all.toFixed(0)} ms: asked at once, within one budget`);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => blackhole.close(r));
    }
  });
});
