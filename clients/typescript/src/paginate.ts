import type { CallOptions } from "@connectrpc/connect";

/** The page fields every hookplane List* request has (AIP-158). */
export interface PageRequest {
  pageToken?: string;
}

/** The page field every paginated hookplane List* response has. */
export interface PageResponse {
  nextPageToken: string;
}

/**
 * Yields every item of a List* RPC, fetching page after page by following
 * `nextPageToken` until it comes back empty. Pages are fetched lazily: a
 * loop that stops early fetches no more.
 *
 * ```ts
 * for await (const c of paginate(client.connectors.listConnectors, { pageSize: 50 }, (r) => r.connectors)) {
 *   console.log(c.id);
 * }
 * ```
 *
 * `request` holds the filters and page size; each page sends it again with
 * the next token, as the API requires (the same filter on every page).
 */
export async function* paginate<Request extends PageRequest, Response extends PageResponse, Item>(
  list: (request: Request, options?: CallOptions) => Promise<Response>,
  request: NoInfer<Request>,
  items: (response: Response) => readonly Item[],
  options?: CallOptions,
): AsyncGenerator<Item, void, undefined> {
  let pageToken = request.pageToken ?? "";
  const seen = new Set<string>();
  for (;;) {
    const response = await list({ ...request, pageToken }, options);
    yield* items(response);
    pageToken = response.nextPageToken;
    if (pageToken === "") {
      return;
    }
    // A server handing out a token it already gave would loop forever;
    // fail loudly instead.
    if (seen.has(pageToken)) {
      throw new Error(`hookplane: the server repeated page token ${JSON.stringify(pageToken)}`);
    }
    seen.add(pageToken);
  }
}
