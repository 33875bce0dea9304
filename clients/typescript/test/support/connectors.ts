import type { ConnectorSchema, MessageInitShape } from "@hookplane/sdk";

/**
 * A connector as README.md shows it: bearer auth, mappings, and a perform
 * that POSTs a JSON body built from them to `targetUrl`.
 */
export function orderConnector(displayName: string, targetUrl: string): MessageInitShape<typeof ConnectorSchema> {
  return {
    displayName,
    auth: { bearerToken: true },
    mappings: [
      { name: "order_id", expression: "$payload.id" },
      { name: "email", expression: "lower($payload.customer.email)" },
    ],
    perform: {
      method: "POST",
      url: `${targetUrl}/orders`,
      body: [
        { key: "id", value: "$processed.order_id" },
        { key: "customer.email", value: "$processed.email" },
      ],
    },
  };
}

/** A unique suffix, so runs against a shared server never collide. */
export function unique(): string {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
