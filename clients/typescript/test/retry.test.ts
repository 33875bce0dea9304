// Retries of UNAVAILABLE against real servers: one that appears only after
// the client started calling, a port where none ever listens, and a server
// that refuses the key (which must not be retried).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, DEFAULT_RETRY, backoffDelayMs, createClient, parseError, type Interceptor } from "@hookplane/sdk";
import { dataDirWithOperatorKey, freePort, startDev, type DevServer } from "./support/dev.js";
import { grpcUrl } from "./support/env.js";

/** An interceptor counting attempts: passed in `interceptors`, it runs once per attempt. */
function attemptCounter(): { interceptor: Interceptor; attempts: () => number } {
  let attempts = 0;
  return {
    interceptor: (next) => async (req) => {
      attempts++;
      return await next(req);
    },
    attempts: () => attempts,
  };
}

test("a call to a server that is not up yet succeeds once it starts", async () => {
  const { dataDir, operatorKey, remove } = dataDirWithOperatorKey();
  const port = await freePort();
  const counter = attemptCounter();
  const client = createClient({
    baseUrl: `http://127.0.0.1:${port}`,
    apiKey: operatorKey,
    // At least ~30 s of backoff in all: far more than a debug build of dev
    // needs to start, even on a loaded machine.
    retry: { maxAttempts: 120, initialBackoffMs: 50, maxBackoffMs: 500 },
    interceptors: [counter.interceptor],
  });
  let server: DevServer | undefined;
  try {
    const call = client.organizations.listOrganizations({});
    // Awaited below; until then a failure must not count as unhandled.
    call.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.ok(counter.attempts() >= 1, "the client was already calling before the server started");
    server = await startDev(dataDir, port);
    assert.equal(server.grpcAddress, `127.0.0.1:${port}`);
    const { organizations } = await call;
    assert.deepEqual(
      organizations.map((o) => o.displayName),
      ["Default organization"],
    );
    assert.ok(counter.attempts() > 1, `retried (${counter.attempts()} attempts)`);
  } finally {
    client.close();
    await server?.stop();
    remove();
  }
});

test("retries stop after maxAttempts and surface UNAVAILABLE", async () => {
  const port = await freePort();
  const counter = attemptCounter();
  const client = createClient({
    baseUrl: `http://127.0.0.1:${port}`,
    apiKey: "hpk_nobody",
    retry: { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 20 },
    interceptors: [counter.interceptor],
  });
  try {
    const parsed = await client.plans.listPlans({}).then(
      () => assert.fail("a call to a closed port succeeded"),
      (e: unknown) => parseError(e),
    );
    assert.equal(parsed.code, Code.Unavailable, parsed.message);
    assert.equal(counter.attempts(), 3);
  } finally {
    client.close();
  }
});

test("a deadline ends the retries", async () => {
  const port = await freePort();
  const client = createClient({
    baseUrl: `http://127.0.0.1:${port}`,
    apiKey: "hpk_nobody",
    retry: { maxAttempts: 1000, initialBackoffMs: 50, maxBackoffMs: 50 },
  });
  try {
    const started = Date.now();
    const parsed = await client.plans.listPlans({}, { timeoutMs: 300 }).then(
      () => assert.fail("a call to a closed port succeeded"),
      (e: unknown) => parseError(e),
    );
    assert.equal(parsed.code, Code.DeadlineExceeded, parsed.message);
    assert.ok(Date.now() - started < 5_000, "the call ended near its deadline");
  } finally {
    client.close();
  }
});

test("a refused API key is UNAUTHENTICATED and not retried", async () => {
  const counter = attemptCounter();
  const client = createClient({
    baseUrl: grpcUrl(),
    apiKey: "hpk_thisKeyWasNeverIssued0000000000",
    retry: { maxAttempts: 5, initialBackoffMs: 10 },
    interceptors: [counter.interceptor],
  });
  try {
    const parsed = await client.connectors.listConnectors({}).then(
      () => assert.fail("a made-up key was accepted"),
      (e: unknown) => parseError(e),
    );
    assert.equal(parsed.code, Code.Unauthenticated, parsed.message);
    assert.equal(counter.attempts(), 1);
  } finally {
    client.close();
  }
});

test("backoff grows exponentially up to its cap, jittered in the upper half", () => {
  const options = { ...DEFAULT_RETRY, initialBackoffMs: 100, multiplier: 2, maxBackoffMs: 1_000 };
  const lowest = (retry: number) => backoffDelayMs(options, retry, () => 0);
  const highest = (retry: number) => backoffDelayMs(options, retry, () => 1);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(lowest), [50, 100, 200, 400, 500, 500]);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(highest), [100, 200, 400, 800, 1_000, 1_000]);
});
