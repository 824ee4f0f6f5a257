import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { resolveClientAddress, trustList } from "../api/client-address.ts";
import { createVisitStore, type VisitStore } from "../api/visits.ts";
import { startTestApi, type TestApi } from "./helpers/api.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";

const SALT = "visit-salt-for-tests-0123456789";

describe("GET /api/visit on a real Postgres", () => {
  let db: TestPostgres;
  let pool: pg.Pool;
  let visits: VisitStore;
  let t: TempSpool;
  let api: TestApi;
  before(async () => {
    db = await startPostgres();
    pool = new pg.Pool({ connectionString: db.url, connectionTimeoutMillis: 1000, query_timeout: 1400, max: 5 });
    pool.on("error", () => undefined);
    visits = createVisitStore({ pool, salt: SALT });
    await visits.ensureSchema();
    await visits.ensureSchema(); // idempotent
    t = await tempSpool();
    api = await startTestApi(t.root, { TRUSTED_PROXIES: "127.0.0.1" }, visits);
  });
  after(async () => {
    await api.close();
    await pool.end();
    await db.cleanup();
    await t.cleanup();
  });

  const visit = async (headers: Record<string, string> = {}) => {
    const res = await fetch(`${api.url}/api/visit`, { headers });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it("counts one visit per call and distinct visitors by salted hash, never the raw address", async () => {
    const a = await visit({ "x-forwarded-for": "203.0.113.7" });
    assert.equal(a.status, 200);
    const b = await visit({ "x-forwarded-for": "203.0.113.7" });
    assert.equal(b.body.visits, (a.body.visits as number) + 1);
    assert.equal(b.body.unique, a.body.unique, "same visitor");
    const c = await visit({ "x-forwarded-for": "198.51.100.9" });
    assert.equal(c.body.visits, (a.body.visits as number) + 2);
    assert.equal(c.body.unique, (a.body.unique as number) + 1, "a new visitor");
    const stored = await pool.query<{ hash: string }>("select hash from visitors");
    for (const row of stored.rows) assert.match(row.hash, /^[0-9a-f]{64}$/);
    assert.ok(!JSON.stringify(stored.rows).includes("203.0.113.7"));
  });

  it(
    "answers 503 within 2 s while Postgres is down, keeps /health at 200, and recovers without a restart",
    { skip: !process.env.DATABASE_URL ? false : "DATABASE_URL given: the external server cannot be stopped" },
    async () => {
      await db.stop();
      try {
        const started = performance.now();
        const down = await visit();
        const ms = performance.now() - started;
        assert.equal(down.status, 503);
        assert.equal(down.body.error, "database unavailable");
        assert.ok(ms < 2000, `503 took ${Math.round(ms)} ms`);
        assert.equal((await fetch(`${api.url}/health`)).status, 200);
      } finally {
        await db.start();
      }
      const back = await visit();
      assert.equal(back.status, 200, JSON.stringify(back.body));
    },
  );

  it("answers 503 'no database configured' when there is none", async () => {
    const bare = await startTestApi(t.root);
    try {
      const res = await fetch(`${bare.url}/api/visit`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { error: "no database configured" });
    } finally {
      await bare.close();
    }
  });
});

describe("client address", () => {
  const trusted = trustList(["10.0.0.0/8", "127.0.0.1", "fd00::/8"]);
  it("believes X-Forwarded-For only from a trusted proxy, read right to left", () => {
    assert.equal(resolveClientAddress("203.0.113.5", "1.2.3.4", trusted), "203.0.113.5", "an untrusted peer cannot choose its address");
    assert.equal(resolveClientAddress("10.0.1.5", "198.51.100.1", trusted), "198.51.100.1");
    assert.equal(
      resolveClientAddress("::ffff:127.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.3", trusted),
      "198.51.100.1",
      "a spoofed left part is ignored",
    );
    assert.equal(resolveClientAddress("10.0.1.5", "not-an-ip", trusted), "10.0.1.5");
    assert.equal(resolveClientAddress("fd00::1", "2001:db8::7", trusted), "2001:db8::7");
  });
});
