/** An image reference as Docker reads it: where it lives, and which build it names. */
export interface ImageRef {
  /** The reference as the stack file wrote it (what a warning names). */
  text: string;
  /** The registry's host (and port) as Docker normalises it: `docker.io` for a name without one. */
  registry: string;
  /** Whether the reference names its registry host (`ghcr.io/acme/app`), not Docker Hub by default (`acme/app`). */
  namesHost: boolean;
  /** The repository path in the registry (`library/nginx` for `nginx`). */
  repository: string;
  /** The tag (`latest` when none is written and no digest is). */
  tag: string | undefined;
  /** `sha256:…` when the reference already pins one. */
  digest: string | undefined;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** A reference pinned to a digest: `…@sha256:<64 hex>` at its end, as Swarm keeps a resolved image. */
export const PINNED = /@sha256:[0-9a-f]{64}$/;
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Parse an image reference the way Docker's `reference.ParseNormalizedNamed` does: the first path
 * component is a registry host when it holds a `.` or a `:` or is `localhost`; otherwise the image
 * is on Docker Hub (`docker.io`, with `library/` before a one-component name). Throws on what Docker
 * would refuse.
 * @example
 * parseImageRef("ghcr.io/acme/app:v1")  // { registry: "ghcr.io", repository: "acme/app", tag: "v1", namesHost: true }
 * parseImageRef("nginx")                // { registry: "docker.io", repository: "library/nginx", tag: "latest" }
 */
export function parseImageRef(text: string): ImageRef {
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new Error(`image ${text}: the digest is not sha256:<64 hex>`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new Error(`image ${text}: invalid tag`);
  }
  const slash = rest.indexOf("/");
  const first = slash < 0 ? "" : rest.slice(0, slash);
  const namesHost = slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase());
  const registry = namesHost ? first : "docker.io";
  if (namesHost && !HOST.test(registry)) throw new Error(`image ${text}: invalid registry host`);
  let repository = namesHost ? rest.slice(slash + 1) : rest;
  if (!namesHost && !repository.includes("/")) repository = `library/${repository}`;
  if (repository.length === 0 || repository.length > 255 || !repository.split("/").every((c) => COMPONENT.test(c)))
    throw new Error(`image ${text}: invalid repository name`);
  return { text, registry, namesHost, repository, tag: tag ?? (digest ? undefined : "latest"), digest };
}

/** The host the registry API answers on: Docker Hub's API is registry-1.docker.io. */
export const apiHost = (registry: string): string => (registry === "docker.io" ? "registry-1.docker.io" : registry);

/** The reference pinned to `digest`, as Swarm keeps it: `name:tag@sha256:…` (an existing digest replaced). */
export const pinned = (ref: ImageRef, digest: string): string => `${ref.text.replace(PINNED, "")}@${digest}`;
