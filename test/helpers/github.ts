// A loopback server that answers like GitHub's REST API for the calls the watcher makes: every
// request is checked against GitHub's OpenAPI description (openapi.ts) and every answer too. Faults
// on demand: 5xx for a while, a primary rate limit with x-ratelimit-reset.
import { createPublicKey, createVerify } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { openApiJudge } from "./openapi.ts";

export interface SeenRequest {
  at: number;
  method: string;
  path: string;
  template: string;
  params: Record<string, string>;
  body: Record<string, unknown>;
  /** What this server answered. */
  status: number;
  answer: unknown;
  authorization: string;
}

export interface FakeGithub {
  url: string;
  /** Every request, in arrival order. */
  requests: SeenRequest[];
  /** Requests the description did not allow, with why: a test asserts this stays empty. */
  violations: string[];
  /** Answer `status` to every request until `ms` from now. */
  failFor(ms: number, status?: number): void;
  /** Answer the next request with a primary rate limit that resets `resetS` seconds from now. */
  rateLimitNext(resetS: number): void;
  close(): Promise<void>;
}

const user = (login: string, id: number) => ({
  login,
  id,
  node_id: `U_${id}`,
  avatar_url: `https://avatars.githubusercontent.com/u/${id}`,
  gravatar_id: "",
  url: `https://api.github.com/users/${login}`,
  html_url: `https://github.com/${login}`,
  followers_url: `https://api.github.com/users/${login}/followers`,
  following_url: `https://api.github.com/users/${login}/following{/other_user}`,
  gists_url: `https://api.github.com/users/${login}/gists{/gist_id}`,
  starred_url: `https://api.github.com/users/${login}/starred{/owner}{/repo}`,
  subscriptions_url: `https://api.github.com/users/${login}/subscriptions`,
  organizations_url: `https://api.github.com/users/${login}/orgs`,
  repos_url: `https://api.github.com/users/${login}/repos`,
  events_url: `https://api.github.com/users/${login}/events{/privacy}`,
  received_events_url: `https://api.github.com/users/${login}/received_events`,
  type: "Bot",
  site_admin: false,
});

/** Verify an App's JWT (RS256) with its public key: what GitHub does before minting an installation token. */
function jwtProblem(authorization: string, publicKeyPem: string | undefined, appId: string | undefined): string | null {
  const m = /^bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/i.exec(authorization);
  if (!m || !publicKeyPem) return "an App JWT (Authorization: Bearer <jwt>) is required";
  const [, h, p, sig] = m as unknown as [string, string, string, string];
  const ok = createVerify("RSA-SHA256").update(`${h}.${p}`).verify(createPublicKey(publicKeyPem), Buffer.from(sig, "base64url"));
  if (!ok) return "the JWT's signature does not verify";
  const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as { iss?: unknown; exp?: number; iat?: number };
  if (String(claims.iss) !== appId) return `the JWT's iss ${String(claims.iss)} is not the App ${appId}`;
  if (!claims.exp || !claims.iat || claims.exp - claims.iat > 600) return "the JWT must expire within 10 minutes";
  return null;
}

/** A commit as GitHub's REST API shows it (the `commit` schema), for compare answers. */
function commitOf(repoUrl: string, sha: string) {
  const who = { name: "Codertocat", email: "octocat@github.com", date: "2026-12-01T00:00:00Z" };
  const web = repoUrl.replace("https://api.github.com/repos/", "https://github.com/");
  return {
    url: `${repoUrl}/commits/${sha}`,
    sha,
    node_id: `C_${sha.slice(0, 12)}`,
    html_url: `${web}/commit/${sha}`,
    comments_url: `${repoUrl}/commits/${sha}/comments`,
    commit: {
      url: `${repoUrl}/git/commits/${sha}`,
      author: who,
      committer: who,
      message: "a commit",
      comment_count: 0,
      tree: { sha, url: `${repoUrl}/git/trees/${sha}` },
    },
    author: null,
    committer: null,
    parents: [],
  };
}

/**
 * Start the fake on 127.0.0.1. With `app`, the installation-token endpoint checks the App's JWT and
 * mints a token that the other endpoints then require; otherwise they require `token <token>`.
 * `branches` is each branch's history, tip first: what compare and the branch's tip answer from (a
 * test moves a branch by changing the array it passed).
 */
export async function startFakeGithub(
  o: { token?: string; app?: { id: string; publicKeyPem: string }; branches?: Record<string, string[]> } = {},
): Promise<FakeGithub> {
  const judge = openApiJudge();
  const requests: SeenRequest[] = [];
  const violations: string[] = [];
  let failUntil = 0;
  let failStatus = 502;
  let rateLimit: number | null = null;
  let nextId = 1000;
  const minted = new Set<string>();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const text = Buffer.concat(chunks).toString("utf8");
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
      const authorization = req.headers.authorization ?? "";
      const current: { seen?: SeenRequest } = {};
      const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
        if (current.seen) Object.assign(current.seen, { status, answer: payload });
        res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
        res.end(JSON.stringify(payload));
      };
      const matched = judge.match(req.method ?? "", path);
      if ("error" in matched) {
        violations.push(matched.error);
        return send(404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" });
      }
      const seen: SeenRequest = {
        at: Date.now(),
        method: req.method ?? "",
        path,
        template: matched.template,
        params: matched.params,
        body: body ?? {},
        status: 0,
        answer: null,
        authorization,
      };
      current.seen = seen;
      requests.push(seen);
      for (const p of judge.checkRequest(matched.op, matched.params, body)) violations.push(`${req.method} ${matched.template}: ${p}`);
      if (!/^application\/vnd\.github/.test(String(req.headers.accept)) || !req.headers["user-agent"])
        violations.push(`${req.method} ${path}: Accept application/vnd.github… and a User-Agent are required`);

      if (Date.now() < failUntil) return send(failStatus, { message: "Server Error" });
      if (rateLimit !== null) {
        const reset = Math.ceil(Date.now() / 1000) + rateLimit;
        rateLimit = null;
        return send(
          403,
          {
            message: "API rate limit exceeded for installation.",
            documentation_url: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
          },
          {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": String(reset),
            "x-ratelimit-resource": "core",
          },
        );
      }
      const answer = respond(matched.template, matched.params, body ?? {}, authorization);
      for (const p of judge.checkResponse(matched.op, answer.status, answer.body))
        violations.push(`our answer to ${matched.template}: ${p}`);
      send(answer.status, answer.body);
    });
  });

  function respond(
    template: string,
    params: Record<string, string>,
    body: Record<string, unknown>,
    authorization: string,
  ): { status: number; body: unknown } {
    const now = new Date().toISOString();
    const repoUrl = `https://api.github.com/repos/${params.owner}/${params.repo}`;
    if (template === "/app/installations/{installation_id}/access_tokens") {
      const problem = jwtProblem(authorization, o.app?.publicKeyPem, o.app?.id);
      if (problem) return { status: 401, body: { message: problem, documentation_url: "https://docs.github.com/rest", status: "401" } };
      const token = `ghs_test${nextId++}`;
      minted.add(token);
      return {
        status: 201,
        body: {
          token,
          expires_at: new Date(Date.now() + 3600_000).toISOString(),
          permissions: { deployments: "write", statuses: "write" },
          repository_selection: "selected",
        },
      };
    }
    const given = /^token (\S+)$/.exec(authorization)?.[1];
    if (!given || (o.app ? !minted.has(given) : given !== o.token))
      return { status: 401, body: { message: "Bad credentials", documentation_url: "https://docs.github.com/rest" } };
    if (template === "/repos/{owner}/{repo}/compare/{basehead}") {
      const [base = "", head = ""] = String(params.basehead).split("...");
      const history = o.branches?.[base];
      if (!history) return { status: 404, body: { message: "Not Found", documentation_url: "https://docs.github.com/rest" } };
      const at = history.indexOf(head);
      const status = at === 0 ? "identical" : at > 0 ? "behind" : "diverged";
      const tip = commitOf(repoUrl, history[0] as string);
      const web = repoUrl.replace("https://api.github.com/repos/", "https://github.com/");
      return {
        status: 200,
        body: {
          url: `${repoUrl}/compare/${params.basehead}`,
          html_url: `${web}/compare/${params.basehead}`,
          permalink_url: `${web}/compare/${params.basehead}`,
          diff_url: `${web}/compare/${params.basehead}.diff`,
          patch_url: `${web}/compare/${params.basehead}.patch`,
          base_commit: tip,
          merge_base_commit: at >= 0 ? commitOf(repoUrl, head) : tip,
          status,
          ahead_by: at >= 0 ? 0 : 1,
          behind_by: Math.max(0, at),
          total_commits: at >= 0 ? 0 : 1,
          commits: at >= 0 ? [] : [commitOf(repoUrl, head)],
        },
      };
    }
    if (template === "/repos/{owner}/{repo}/branches/{branch}") {
      const tip = o.branches?.[String(params.branch)]?.[0];
      if (!tip) return { status: 404, body: { message: "Branch not found", documentation_url: "https://docs.github.com/rest" } };
      const self = `${repoUrl}/branches/${params.branch}`;
      return {
        status: 200,
        body: {
          name: params.branch,
          commit: commitOf(repoUrl, tip),
          _links: { self, html: self.replace("https://api.github.com/repos/", "https://github.com/").replace("/branches/", "/tree/") },
          protected: false,
          protection: { enabled: false, required_status_checks: { enforcement_level: "off", contexts: [], checks: [] } },
          protection_url: `${self}/protection`,
        },
      };
    }
    if (template === "/repos/{owner}/{repo}/deployments") {
      const id = nextId++;
      return {
        status: 201,
        body: {
          url: `${repoUrl}/deployments/${id}`,
          id,
          node_id: `DE_${id}`,
          sha: String(body.ref),
          ref: String(body.ref),
          task: String(body.task ?? "deploy"),
          payload: body.payload ?? {},
          original_environment: String(body.environment),
          environment: String(body.environment),
          description: (body.description as string | undefined) ?? null,
          creator: user("swarmhook[bot]", 9),
          created_at: now,
          updated_at: now,
          statuses_url: `${repoUrl}/deployments/${id}/statuses`,
          repository_url: repoUrl,
          transient_environment: Boolean(body.transient_environment),
          production_environment: Boolean(body.production_environment),
        },
      };
    }
    const id = nextId++;
    if (template === "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses") {
      const d = `${repoUrl}/deployments/${params.deployment_id}`;
      return {
        status: 201,
        body: {
          url: `${d}/statuses/${id}`,
          id,
          node_id: `DES_${id}`,
          state: body.state,
          creator: user("swarmhook[bot]", 9),
          description: String(body.description ?? ""),
          environment: String(body.environment ?? ""),
          target_url: String(body.log_url ?? ""),
          log_url: String(body.log_url ?? ""),
          environment_url: String(body.environment_url ?? ""),
          created_at: now,
          updated_at: now,
          deployment_url: d,
          repository_url: repoUrl,
        },
      };
    }
    return {
      status: 201,
      body: {
        url: `${repoUrl}/statuses/${params.sha}`,
        avatar_url: null,
        id,
        node_id: `SC_${id}`,
        state: String(body.state),
        description: (body.description as string | undefined) ?? null,
        target_url: (body.target_url as string | undefined) ?? null,
        context: String(body.context ?? "default"),
        created_at: now,
        updated_at: now,
        creator: user("swarmhook[bot]", 9),
      },
    };
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    violations,
    failFor(ms, status = 502) {
      failUntil = Date.now() + ms;
      failStatus = status;
    },
    rateLimitNext(resetS) {
      rateLimit = resetS;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** What GitHub holds for one commit: its Deployments (each with its statuses, in order) and its commit statuses. */
export function commitStory(
  gh: FakeGithub,
  sha: string,
): { deployments: { id: number; body: Record<string, unknown>; states: string[] }[]; commit: string[] } {
  const ok = gh.requests.filter((r) => r.status === 201);
  const deployments = ok
    .filter((r) => r.template === "/repos/{owner}/{repo}/deployments" && r.body.ref === sha)
    .map((r) => {
      const id = (r.answer as { id: number }).id;
      const states = ok
        .filter((s) => s.template.endsWith("/statuses") && s.params.deployment_id === String(id))
        .map((s) => String(s.body.state));
      return { id, body: r.body, states };
    });
  const commit = ok
    .filter((r) => r.template === "/repos/{owner}/{repo}/statuses/{sha}" && r.params.sha === sha)
    .map((r) => String(r.body.state));
  return { deployments, commit };
}
