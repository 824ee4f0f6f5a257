import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pg from "pg";
import { startPostgres } from "./helpers/postgres.ts";

describe("throwaway postgres", () => {
  it("starts, requires the password over TCP, stops and starts again on the same port", async (t) => {
    const db = await startPostgres();
    try {
      const q = async (url: string) => {
        const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
        try {
          await c.connect();
          return (await c.query<{ v: number }>("select 41 + 1 as v")).rows[0]?.v;
        } finally {
          await c.end().catch(() => undefined);
        }
      };
      assert.equal(await q(db.url), 42);
      await assert.rejects(q(db.url.replace(db.password, "wrong")), /password authentication failed/);
      // a Postgres named by DATABASE_URL is not the suite's to stop: said as a skip, never passed over in silence
      await t.test(
        "stops and starts again on the same port",
        { skip: db.controllable ? false : "DATABASE_URL names a server the suite does not own" },
        async () => {
          await db.stop();
          await assert.rejects(q(db.url));
          await db.start();
          assert.equal(await q(db.url), 42);
        },
      );
    } finally {
      await db.cleanup();
    }
  });
});
