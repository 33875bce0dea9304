// The connector lifecycle through the SDK against a real `hookplane dev`:
// create, wait until live, trigger over HTTP, read the event back.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, ConnectError, EventStatus, TokenKind, paginate, parseError, type Connector } from "@hookplane/sdk";
import { adminClient } from "./support/client.js";
import { orderConnector, unique } from "./support/connectors.js";
import { triggerBase } from "./support/env.js";
import { startTarget, type Target } from "./support/target.js";
import { waitFor } from "./support/wait.js";

const client = adminClient();
let target: Target;

before(async () => {
  target = await startTarget();
});

after(async () => {
  client.close();
  await target.close();
});

/** Waits until every connected node serves the connector's last change. */
async function waitUntilLive(connector: Connector): Promise<void> {
  await waitFor(`connector ${connector.id} to reach the nodes`, async () => {
    const { rollout } = await client.connectors.getConnector({ id: connector.id });
    const live = rollout !== undefined && rollout.nodesConnected > 0 && rollout.nodesApplied >= rollout.nodesConnected;
    return live ? true : undefined;
  });
}

test("a created connector runs a trigger call and records its event", async () => {
  const requestId = `ts-lifecycle-${unique()}`;
  const created = await client.connectors.createConnector({
    connector: orderConnector(`ts orders ${requestId}`, target.url),
    requestId,
  });
  assert.match(created.id, /^con_/);
  assert.equal(created.triggerPath, `/api/v1/connectors/${created.id}/trigger`);
  // The token is in the create response, and only there.
  assert.equal(created.issuedCredentials.length, 1);
  const [credential] = created.issuedCredentials;
  assert.equal(credential?.kind, TokenKind.BEARER);
  assert.match(credential?.token ?? "", /^hpt_/);
  const fetched = await client.connectors.getConnector({ id: created.id });
  assert.deepEqual(fetched.issuedCredentials, []);
  assert.equal(fetched.tokens.length, 1);

  await waitUntilLive(created);
  const payload = { id: 42, customer: { email: "Ann@Example.COM" } };
  const answer = await fetch(`${triggerBase()}${created.triggerPath}`, {
    method: "POST",
    headers: { authorization: `Bearer ${credential?.token}`, "content-type": "application/json" },
    body: JSON.stringify(payload),
  });
  const answerText = await answer.text();
  assert.equal(answer.status, 200, answerText);
  const result = JSON.parse(answerText) as { status: string; event_id: number; response_code: number };
  assert.equal(result.status, "completed");
  assert.equal(result.response_code, 200);
  // Event ids are int64 (bigint in protobuf-es); the server keeps them below
  // 2^53, so the JSON number is exact.
  assert.ok(Number.isSafeInteger(result.event_id), `event_id ${result.event_id} is an exact integer`);
  const eventId = BigInt(result.event_id);

  assert.equal(target.received.length, 1);
  const performed = target.received[0];
  assert.equal(performed?.method, "POST");
  assert.equal(performed?.path, "/orders");
  assert.match(performed?.headers["content-type"] ?? "", /^application\/json/);
  assert.deepEqual(JSON.parse(performed?.body ?? ""), { id: 42, customer: { email: "ann@example.com" } });

  // The node reports the event to the control plane asynchronously.
  const event = await waitFor(`event ${eventId}`, async () => {
    try {
      return await client.events.getEvent({ id: eventId });
    } catch (err) {
      if (parseError(err).code === Code.NotFound) {
        return undefined;
      }
      throw err;
    }
  });
  assert.equal(typeof event.id, "bigint");
  assert.equal(event.id, eventId);
  assert.equal(event.connectorId, created.id);
  assert.equal(event.status, EventStatus.COMPLETED);
  assert.equal(event.responseCode, 200);
  assert.deepEqual(JSON.parse(event.trace?.payload ?? ""), payload);
  assert.deepEqual(JSON.parse(event.trace?.processed ?? ""), { order_id: 42, email: "ann@example.com" });
  assert.equal(event.trace?.performAttempts.length, 1);
  assert.equal(event.trace?.performAttempts[0]?.status, 200);

  // Listing with a filter finds the same event.
  const listed = [];
  for await (const e of paginate(client.events.listEvents, { filter: { connectorId: created.id } }, (r) => r.events)) {
    listed.push(e.id);
  }
  assert.deepEqual(listed, [eventId]);
});

test("a retried create with the same request id returns the first connector and token", async () => {
  const requestId = `ts-idempotent-${unique()}`;
  const request = { connector: orderConnector(`ts idempotent ${requestId}`, target.url), requestId };
  const first = await client.connectors.createConnector(request);
  const second = await client.connectors.createConnector(request);
  assert.equal(second.id, first.id);
  assert.equal(second.issuedCredentials[0]?.token, first.issuedCredentials[0]?.token);
});

test("invalid input is INVALID_ARGUMENT naming every bad field at once", async () => {
  const connector = orderConnector("", target.url);
  connector.perform = { method: "POST", url: "" };
  connector.mappings = [
    { name: "order_id", expression: "uper($payload.id)" },
    { name: "email", expression: "$payload.customer.email" },
  ];
  const err = await client.connectors.createConnector({ connector }).then(
    () => assert.fail("an invalid connector was created"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConnectError);
  const { code, message, violations } = parseError(err);
  assert.equal(code, Code.InvalidArgument, message);
  assert.doesNotMatch(message, /^\[invalid_argument\]/);
  const byField = new Map(violations.map((v) => [v.field, v.description]));
  assert.deepEqual(
    [...byField.keys()].sort(),
    ["connector.display_name", "connector.mappings[0].expression", "connector.perform.url"],
    JSON.stringify(violations),
  );
  assert.equal(byField.get("connector.display_name"), "is required");
  assert.equal(byField.get("connector.perform.url"), "is required");
  // Expression errors give line:column inside the expression's text.
  assert.match(byField.get("connector.mappings[0].expression") ?? "", /^1:1: unknown function `uper`/);
});

test("unknown ids are NOT_FOUND without violations", async () => {
  for (const call of [
    () => client.connectors.getConnector({ id: "con_0000000000000000000000" }),
    () => client.events.getEvent({ id: 1n }),
  ]) {
    const parsed = await call().then(
      () => assert.fail("an unknown id was found"),
      (e: unknown) => parseError(e),
    );
    assert.equal(parsed.code, Code.NotFound, parsed.message);
    assert.deepEqual(parsed.violations, []);
  }
});
