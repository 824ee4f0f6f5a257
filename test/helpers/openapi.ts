// GitHub's published REST description (@octokit/openapi), as the judge of every request the watcher
// sends to the loopback GitHub and of every answer that server gives: nothing here is hand-written.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Ajv, type ValidateFunction } from "ajv";

interface Operation {
  operationId: string;
  parameters?: { name: string; in: string; required?: boolean; schema: object }[];
  requestBody?: { required?: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { content?: Record<string, { schema: JsonSchema }> }>;
}
interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
}

/** The operations the watcher calls (and GitHub App token minting), as GitHub describes them. */
const USED = [
  ["post", "/repos/{owner}/{repo}/deployments"],
  ["post", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"],
  ["post", "/repos/{owner}/{repo}/statuses/{sha}"],
  ["post", "/app/installations/{installation_id}/access_tokens"],
  ["get", "/repos/{owner}/{repo}/compare/{basehead}"],
  ["get", "/repos/{owner}/{repo}/branches/{branch}"],
] as const;

export interface OpenApiJudge {
  /** The operation a request is for, or a reason it matches none. */
  match(method: string, path: string): { op: Operation; template: string; params: Record<string, string> } | { error: string };
  /** Every problem with a request body (schema, unknown keys, a missing body), empty when it is valid. */
  checkRequest(op: Operation, params: Record<string, string>, body: unknown): string[];
  /** Every problem with an answer we give, against the described response for that status. */
  checkResponse(op: Operation, status: number, body: unknown): string[];
}

let judge: OpenApiJudge | undefined;

/**
 * OpenAPI 3.0's `nullable: true` beside no `type` (GitHub's comparison schema has it), which ajv
 * refuses to compile: made `anyOf: [the schema, null]`, as the description means it. A copy.
 */
function untypedNullable(schema: unknown, seen = new Map<object, unknown>()): unknown {
  if (Array.isArray(schema)) return schema.map((x) => untypedNullable(x, seen));
  if (typeof schema !== "object" || schema === null) return schema;
  const done = seen.get(schema);
  if (done) return done;
  const out: Record<string, unknown> = {};
  seen.set(schema, out);
  for (const [k, v] of Object.entries(schema)) out[k] = untypedNullable(v, seen);
  if (out.nullable === true && out.type === undefined) {
    delete out.nullable;
    const inner = { ...out };
    for (const k of Object.keys(out)) delete out[k];
    out.anyOf = [inner, { type: "null" }];
  }
  return out;
}

/** Load the description once per process (73 MB of JSON: about a second) and compile the used operations. */
export function openApiJudge(): OpenApiJudge {
  if (judge) return judge;
  const file = createRequire(import.meta.url).resolve("@octokit/openapi/generated/api.github.com.deref.json");
  const spec = JSON.parse(readFileSync(file, "utf8")) as { paths: Record<string, Record<string, Operation>> };
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const ops = USED.map(([method, template]) => {
    const op = spec.paths[template]?.[method];
    if (!op) throw new Error(`@octokit/openapi has no ${method.toUpperCase()} ${template}`);
    const pattern = new RegExp(`^${template.replace(/\{[a-z_]+\}/g, "([^/]+)")}$`);
    const names = [...template.matchAll(/\{([a-z_]+)\}/g)].map((m) => m[1] as string);
    return { method, template, op, pattern, names };
  });
  const compiled = new Map<object, ValidateFunction>();
  const compile = (schema: object) => {
    let v = compiled.get(schema);
    if (!v) compiled.set(schema, (v = ajv.compile(untypedNullable(schema) as object)));
    return v;
  };
  const errors = (v: ValidateFunction) => (v.errors ?? []).map((e) => `${e.instancePath || "(body)"} ${e.message ?? ""}`);
  judge = {
    match(method, path) {
      for (const o of ops) {
        const m = o.method === method.toLowerCase() ? o.pattern.exec(path) : null;
        if (m)
          return {
            op: o.op,
            template: o.template,
            params: Object.fromEntries(o.names.map((n, i) => [n, decodeURIComponent(m[i + 1] ?? "")])),
          };
      }
      return { error: `${method} ${path} is none of the operations the watcher may call` };
    },
    checkRequest(op, params, body) {
      const problems: string[] = [];
      for (const p of op.parameters ?? []) {
        if (p.in !== "path") continue;
        const raw = params[p.name];
        const value = (p.schema as { type?: string }).type === "integer" ? Number(raw) : raw;
        if (!compile(p.schema)(value)) problems.push(`path parameter ${p.name}=${raw} does not fit ${JSON.stringify(p.schema)}`);
      }
      const schema = op.requestBody?.content["application/json"]?.schema;
      if (!schema) return body === undefined ? problems : [...problems, "a body where the operation takes none"];
      if (body === undefined) return op.requestBody?.required ? [...problems, "the required body is missing"] : problems;
      const v = compile(schema);
      if (!v(body)) problems.push(...errors(v));
      for (const key of Object.keys(body as object)) if (!(key in (schema.properties ?? {}))) problems.push(`unknown field ${key}`);
      return problems;
    },
    checkResponse(op, status, body) {
      const schema = op.responses[String(status)]?.content?.["application/json"]?.schema;
      if (!schema) return [`status ${status} is not described for ${op.operationId}`];
      const v = compile(schema);
      return v(body) ? [] : errors(v);
    },
  };
  return judge;
}
