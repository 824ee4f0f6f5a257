// Image references as Docker reads them, and which registries are asked over plain HTTP.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseImageRef, pinned } from "../agent/prepare/image-ref.ts";
import { insecureRegistries } from "../agent/prepare/images.ts";
import { scriptedDocker } from "./helpers/scripted-docker.ts";

const D = `sha256:${"a".repeat(64)}`;

describe("image references", () => {
  it("normalises as Docker does: Docker Hub by default, library/ for one component, latest when no tag", () => {
    const cases: [string, { registry: string; repository: string; tag: string | undefined; digest?: string; namesHost: boolean }][] = [
      ["nginx", { registry: "docker.io", repository: "library/nginx", tag: "latest", namesHost: false }],
      ["traefik:v3.1", { registry: "docker.io", repository: "library/traefik", tag: "v3.1", namesHost: false }],
      ["acme/app:1", { registry: "docker.io", repository: "acme/app", tag: "1", namesHost: false }],
      ["ghcr.io/acme/app:3f2a9c1", { registry: "ghcr.io", repository: "acme/app", tag: "3f2a9c1", namesHost: true }],
      ["localhost/app", { registry: "localhost", repository: "app", tag: "latest", namesHost: true }],
      ["127.0.0.1:5000/a/b/c:t", { registry: "127.0.0.1:5000", repository: "a/b/c", tag: "t", namesHost: true }],
      [`ghcr.io/acme/app@${D}`, { registry: "ghcr.io", repository: "acme/app", tag: undefined, digest: D, namesHost: true }],
      [`ghcr.io/acme/app:v1@${D}`, { registry: "ghcr.io", repository: "acme/app", tag: "v1", digest: D, namesHost: true }],
    ];
    for (const [text, want] of cases) {
      const r = parseImageRef(text);
      assert.deepEqual(
        { registry: r.registry, repository: r.repository, tag: r.tag, namesHost: r.namesHost, ...(r.digest ? { digest: r.digest } : {}) },
        want,
        text,
      );
    }
  });

  it("refuses what Docker refuses, naming the reference", () => {
    for (const bad of ["Acme/App", "ghcr.io/acme/app@sha256:short", "app:bad tag", "ghcr.io/", "a//b"])
      assert.throws(
        () => parseImageRef(bad),
        (err: Error) => err.message.startsWith(`image ${bad}`),
        bad,
      );
  });

  it("pins name:tag@digest, replacing a digest already there", () => {
    const other = `sha256:${"b".repeat(64)}`;
    assert.equal(pinned(parseImageRef("ghcr.io/acme/app:v1"), D), `ghcr.io/acme/app:v1@${D}`);
    assert.equal(pinned(parseImageRef(`ghcr.io/acme/app:v1@${D}`), other), `ghcr.io/acme/app:v1@${other}`);
  });
});

describe("insecure registries (docker info)", () => {
  it("loopback, docker info's CIDRs and its insecure index configs are plain HTTP; others HTTPS", async () => {
    const docker = scriptedDocker(() => ({
      exitCode: 0,
      stdout: JSON.stringify({
        InsecureRegistryCIDRs: ["127.0.0.0/8", "198.18.13.0/24"],
        IndexConfigs: { "docker.io": { Secure: true }, "registry.lan:5000": { Secure: false } },
      }),
    }));
    const insecure = insecureRegistries(docker);
    assert.equal(await insecure("127.0.0.1:5000"), true);
    assert.equal(await insecure("localhost:5000"), true);
    assert.equal(await insecure("198.18.13.1:41000"), true);
    assert.equal(await insecure("198.18.14.1:41000"), false);
    assert.equal(await insecure("registry.lan:5000"), true);
    assert.equal(await insecure("ghcr.io"), false);
    assert.equal(docker.calls.length, 1, "docker info asked once");
  });

  it("a failed docker info is not kept; a good answer is kept five minutes", async () => {
    let up = false;
    const docker = scriptedDocker(() =>
      up
        ? { exitCode: 0, stdout: JSON.stringify({ InsecureRegistryCIDRs: ["10.100.0.0/24"] }) }
        : { exitCode: 1, output: "Cannot connect" },
    );
    let now = 0;
    const insecure = insecureRegistries(docker, () => now);
    assert.equal(await insecure("10.100.0.8:5000"), false, "loopback only while the engine does not answer");
    up = true;
    assert.equal(await insecure("10.100.0.8:5000"), true);
    up = false;
    now += 4 * 60_000;
    assert.equal(await insecure("10.100.0.8:5000"), true, "kept");
    now += 2 * 60_000;
    assert.equal(await insecure("10.100.0.8:5000"), false, "asked again after five minutes");
  });
});
