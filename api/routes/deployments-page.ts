import { Hono } from "hono";
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { shortSha, type Progress, type ResultRecord, type Spool } from "../../spool/index.ts";
import type { DeploymentSummary } from "../history.ts";
import { loadOne, loadPage, parseQuery, type HistoryQuery, type StackDrift } from "./deployments.ts";

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** No script, no external anything: the page works without JavaScript and loads nothing else. */
const CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLE = raw(`
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #6e7781; --line: #d0d7de; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .75rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: end; margin-bottom: 1rem; }
input { font: inherit; padding: .3rem .5rem; } button { font: inherit; padding: .3rem .8rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .8rem; text-transform: uppercase; color: var(--muted); }
code, pre { font: 13px/1.4 ui-monospace, monospace; } pre { white-space: pre-wrap; overflow-wrap: anywhere; background: rgba(127,127,127,.1); padding: .5rem; }
.badge { display: inline-block; white-space: nowrap; padding: 0 .45rem; border-radius: 1rem; font-size: .85rem; font-weight: 600; color: #fff; background: var(--muted); }
.success { background: var(--ok); } .failed, .rolled_back, .invalid, .blocked, .unreadable { background: var(--bad); } .superseded, .stale, .badge.drift { background: var(--warn); } section.drift { border-left: 4px solid var(--warn); padding-left: .75rem; }
.reason { max-width: 28rem; overflow-wrap: anywhere; } .muted { color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; } dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 640px) {
  thead { display: none; } table, tbody, tr, td { display: block; width: auto; }
  tr { border-bottom: 2px solid var(--line); padding: .4rem 0; } td { border: 0; padding: .15rem 0; }
  td::before { content: attr(data-label) ": "; color: var(--muted); font-size: .8rem; } td.reason:empty { display: none; }
}`);

const when = (iso: string | null) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "–");
const took = (ms: number | null) => (ms === null ? "–" : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60_000)} min`);
const branch = (ref: string | null) => (ref ? ref.replace(/^refs\/(heads|tags)\//, "") : "");

function layout(title: string, body: Html, refreshS?: number): Html {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        ${refreshS ? html`<meta http-equiv="refresh" content="${refreshS}" />` : ""}
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="robots" content="noindex" />
        <title>${title} · swarmhook</title>
        <style>
          ${STYLE}
        </style>
      </head>
      <body>
        ${body}
      </body>
    </html>`;
}

function commit(d: DeploymentSummary): Html {
  if (!d.sha) return html`–`;
  const label = html`<code>${shortSha(d.sha)}</code>`;
  const link = d.commitUrl ? html`<a href="${d.commitUrl}" rel="noreferrer">${label}</a>` : label;
  return html`${link} <span class="muted">${branch(d.ref)}</span>`;
}

function row(d: DeploymentSummary): Html {
  const href = `/deployments/${encodeURIComponent(d.id)}`;
  return html`<tr>
    <td data-label="When">${when(d.finishedAt ?? d.receivedAt)}</td>
    <td data-label="Outcome">
      <a href="${href}"><span class="badge ${d.status}">${d.status.replace("_", " ")}</span></a>
    </td>
    <td data-label="Stack">${d.stack ?? "–"}</td>
    <td data-label="Commit">${commit(d)}</td>
    <td data-label="Trigger">${d.trigger ?? "–"}</td>
    <td data-label="Who">${d.sender ?? "–"}</td>
    <td data-label="Took">${took(d.durationMs)}</td>
    <td data-label="Reason" class="reason">${d.reason ?? ""}</td>
  </tr>`;
}

/** Stacks whose running services differ from their last deploy (the reconcile loop's finding), above the history. */
function driftNote(drift: StackDrift[]): Html {
  if (drift.length === 0) return html``;
  return html`<section class="drift">
    ${drift.map(
      (d) =>
        html`<p>
          <span class="badge drift">drift</span> <strong>${d.stack}</strong> differs from its last deploy since ${when(d.since)}:
          ${d.summary} <span class="muted">(checked ${when(d.checkedAt)})</span>
        </p>`,
    )}
  </section>`;
}

function listPage(q: HistoryQuery, items: DeploymentSummary[], next: string | null, drift: StackDrift[] = []): Html {
  const older = next ? `/deployments?${new URLSearchParams(q.stack ? { stack: q.stack, before: next } : { before: next })}` : null;
  return layout(
    "Deployments",
    html`<h1>Deployments${q.stack ? html` of ${q.stack}` : ""}</h1>
      <form method="get" action="/deployments">
        <label
          >Stack <input name="stack" value="${q.stack ?? ""}" placeholder="all" pattern="[A-Za-z0-9][A-Za-z0-9_-]{0,62}" size="14"
        /></label>
        <button type="submit">Filter</button>${q.stack || q.before ? html` <a href="/deployments">all, newest</a>` : ""}
      </form>
      ${driftNote(drift)}
      ${
        items.length === 0
          ? html`<p class="muted">No deployments recorded${q.stack ? " for this stack" : ""} yet.</p>`
          : html`<table>
              <thead>
                <tr>
                  <th>When (UTC)</th>
                  <th>Outcome</th>
                  <th>Stack</th>
                  <th>Commit</th>
                  <th>Trigger</th>
                  <th>Who</th>
                  <th>Took</th>
                  <th>Reason</th>
                </tr>
              </thead>
              <tbody>
                ${items.map(row)}
              </tbody>
            </table>`
      }
      ${older ? html`<p><a href="${older}" rel="next">Older →</a></p>` : ""}`,
  );
}

function recordDetails(r: ResultRecord): Html {
  const images = r.release?.images ?? [];
  return html`${
    images.length > 0
      ? html`<h2>Release</h2>
          <p class="muted">stack file ${r.release?.stackFileHash.slice(0, 19)}…</p>
          <table>
            <thead>
              <tr>
                <th>Service</th>
                <th>Image as the cluster runs it</th>
                <th>Pinned</th>
              </tr>
            </thead>
            <tbody>
              ${images.map(
                (i) =>
                  html`<tr>
                    <td data-label="Service">${i.service}</td>
                    <td data-label="Image"><code>${i.image}</code></td>
                    <td data-label="Pinned">${i.pinned ? "digest" : "reference only"}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
      : ""
  }${
    r.services.length > 0
      ? html`<h2>Services</h2>
          <table>
            <thead>
              <tr>
                <th>Service</th>
                <th>Running</th>
                <th>Image</th>
                <th>Update</th>
              </tr>
            </thead>
            <tbody>
              ${r.services.map(
                (s) =>
                  html`<tr>
                    <td data-label="Service">${s.name}</td>
                    <td data-label="Running">${s.running}/${s.desired ?? "?"}</td>
                    <td data-label="Image"><code>${s.image ?? "–"}</code></td>
                    <td data-label="Update">
                      ${s.updateState ?? "–"}${s.updateMessage ? html` <span class="muted">${s.updateMessage}</span>` : ""}
                    </td>
                  </tr>`,
              )}
            </tbody>
          </table>`
      : ""
  }${
    r.warnings.length > 0
      ? html`<h2>Warnings</h2>
          <ul>
            ${r.warnings.map((w) => html`<li>${w}</li>`)}
          </ul>`
      : ""
  }${r.attempts.map(
    (a) =>
      html`<h2>Attempt ${a.attempt}: exit ${a.exitCode ?? "none"}${a.timedOut ? " (timed out)" : ""}, ${took(a.durationMs)}</h2>
        <p><code>${a.command.join(" ")}</code></p>
        <pre>${a.outputTail || "(no output)"}</pre>`,
  )}`;
}

function detailPage(one: NonNullable<Awaited<ReturnType<typeof loadOne>>>): Html {
  const d = one.deployment;
  const facts: [string, Html | string][] = [
    ["Outcome", html`<span class="badge ${d.status}">${d.status.replace("_", " ")}</span>`],
    ["Stack", d.stack ?? "–"],
    ["Commit", commit(d)],
    ["Repository", d.repository ?? "–"],
    ["Trigger", d.trigger ?? "–"],
    ["Who", d.sender ?? "–"],
    ["Received", when(d.receivedAt)],
    ["Finished", when(d.finishedAt)],
    ["Took", took(d.durationMs)],
    ["Reason", d.reason ?? "–"],
    ["Record", d.record ? html`<code>${d.record}</code>` : "pending"],
  ];
  return layout(
    `${d.status} ${d.sha ? shortSha(d.sha) : d.id}`,
    html`<p><a href="/deployments">← all deployments</a></p>
      <h1>Deployment <code>${d.id}</code></h1>
      <dl>
        ${facts.map(
          ([k, v]) =>
            html`<dt>${k}</dt>
              <dd>${v}</dd>`,
        )}
      </dl>
      ${one.progress ? progressDetails(one.progress) : ""} ${one.record ? recordDetails(one.record) : ""}
      <p class="muted"><a href="/api/deployments/${encodeURIComponent(d.id)}">as JSON</a></p>`,
    // a job still pending refreshes itself (no script: the CSP stays default-src 'none')
    one.record ? undefined : 3,
  );
}

/** A running deploy as the watcher last published it: phase, time so far, each service's tasks on the new version. */
function progressDetails(p: Progress): Html {
  const elapsed = took(Date.now() - Date.parse(p.startedAt));
  const stage = p.stage ? `, stage ${p.stage.n} (${p.stage.index} of ${p.stage.of})` : "";
  return html`<h2>In progress: ${p.phase}${stage}, ${elapsed}</h2>
    ${
      p.services.length > 0
        ? html`<table>
            <thead>
              <tr>
                <th>Service</th>
                <th>New version</th>
                <th>State</th>
              </tr>
            </thead>
            <tbody>
              ${p.services.map(
                (x) =>
                  html`<tr>
                    <td data-label="Service">${x.stage === undefined ? "" : `stage ${x.stage}: `}${x.name}</td>
                    <td data-label="New version">${x.updated}/${x.desired}</td>
                    <td data-label="State">${x.state}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
        : ""
    }
    <p class="muted">as of ${when(p.updatedAt)}; this page refreshes itself every 3 s while the job runs</p>`;
}

/** GET /deployments and /deployments/:id: the history as server-rendered HTML (mounted behind the history token). */
export function createDeploymentsPage(deps: { spool: Spool }): Hono {
  return new Hono()
    .use(async (c, next) => {
      await next();
      c.header("Content-Security-Policy", CSP);
      c.header("X-Content-Type-Options", "nosniff");
      c.header("Referrer-Policy", "no-referrer");
    })
    .get("/", async (c) => {
      const q = parseQuery(c);
      const { items, next, drift } = await loadPage(deps.spool, q);
      return c.html(listPage(q, items, next, drift));
    })
    .get("/:id", async (c) => {
      const one = await loadOne(deps.spool, c.req.param("id"));
      if (!one)
        return c.html(
          layout(
            "Not found",
            html`<p><a href="/deployments">← all deployments</a></p>
              <h1>No such deployment</h1>`,
          ),
          404,
        );
      return c.html(detailPage(one));
    });
}
