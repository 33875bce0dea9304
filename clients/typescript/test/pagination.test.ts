// paginate() follows next_page_token across real pages of ListConnectors.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { paginate, type ListConnectorsRequestSchema, type MessageInitShape } from "@hookplane/sdk";
import { adminClient } from "./support/client.js";
import { orderConnector, unique } from "./support/connectors.js";

const client = adminClient();
const created: string[] = [];
const run = unique();

before(async () => {
  // Targets are never called here: nothing triggers these connectors.
  for (let i = 0; i < 7; i++) {
    const connector = await client.connectors.createConnector({
      connector: orderConnector(`ts page ${run} ${i}`, "http://127.0.0.1:9"),
      requestId: `ts-page-${run}-${i}`,
    });
    created.push(connector.id);
  }
});

after(() => client.close());

/** ListConnectors, recording the page token of each page it is asked for. */
function countingList() {
  const tokens: string[] = [];
  const list = (request: MessageInitShape<typeof ListConnectorsRequestSchema>) => {
    tokens.push(request.pageToken ?? "");
    return client.connectors.listConnectors(request);
  };
  return { list, tokens };
}

test("paginate yields every connector once, across pages, in id order", async () => {
  const { list, tokens } = countingList();
  const ids: string[] = [];
  for await (const connector of paginate(list, { pageSize: 3 }, (r) => r.connectors)) {
    ids.push(connector.id);
  }
  // At least the 7 created here, in pages of 3: three pages or more.
  assert.ok(tokens.length >= 3, `fetched ${tokens.length} pages`);
  assert.equal(new Set(ids).size, ids.length, "no connector is yielded twice");
  for (const id of created) {
    assert.ok(ids.includes(id), `${id} was yielded`);
  }
  assert.deepEqual(ids, [...ids].sort(), "ListConnectors is ordered by id");
  // The first page is asked for without a token, the others with the
  // previous page's.
  assert.equal(tokens[0], "");
  for (const token of tokens.slice(1)) {
    assert.notEqual(token, "");
  }
});

test("paginate fetches no page past the point where the loop stops", async () => {
  const { list, tokens } = countingList();
  let seen = 0;
  for await (const _ of paginate(list, { pageSize: 2 }, (r) => r.connectors)) {
    seen++;
    if (seen === 3) {
      break;
    }
  }
  assert.equal(seen, 3);
  assert.equal(tokens.length, 2, "two pages of two hold the first three");
});
