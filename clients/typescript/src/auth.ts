import type { Interceptor } from "@connectrpc/connect";

/**
 * Sends `authorization: Bearer <apiKey>` on every call, unary and
 * streaming: the hookplane API authenticates each call on its own and has
 * no session to log in to.
 */
export function bearerAuth(apiKey: string): Interceptor {
  // Key files (`admin-key`, `operator-key`) end with a newline, and a header
  // value cannot hold one: trim here rather than fail on every call.
  const key = apiKey.trim();
  if (key === "") {
    throw new TypeError("hookplane: apiKey is empty");
  }
  const value = `Bearer ${key}`;
  return (next) => async (req) => {
    req.header.set("authorization", value);
    return await next(req);
  };
}
