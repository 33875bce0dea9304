import { createClient as createServiceClient, type Client, type Interceptor } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { bearerAuth } from "./auth.js";
import { type RetryOptions, retryUnavailable } from "./retry.js";
import { services } from "./services.js";

export interface ClientOptions {
  /**
   * The gRPC API's URL with its scheme: `http://127.0.0.1:50051` for
   * plaintext HTTP/2 (as `hookplane dev` serves), `https://…` for TLS.
   */
  baseUrl: string;
  /** An admin key (`hpk_…`) or the operator key (`hpo_…`). */
  apiKey: string;
  /** Retries of UNAVAILABLE; `{ maxAttempts: 1 }` turns them off. */
  retry?: RetryOptions;
  /** Interceptors run inside authentication and retries, once per attempt. */
  interceptors?: Interceptor[];
  /** Default deadline of each call, retries included; none by default. */
  timeoutMs?: number;
}

/** One typed client per service, sharing one HTTP/2 connection. */
export type ServiceClients = { readonly [Name in keyof typeof services]: Client<(typeof services)[Name]> };

export interface HookplaneClient extends ServiceClients {
  /**
   * Closes the HTTP/2 connection and fails calls in flight. Optional: an
   * idle connection does not keep Node.js running.
   */
  close(): void;
}

export function createClient(options: ClientOptions): HookplaneClient {
  const url = parseBaseUrl(options.baseUrl);
  // Our own session manager, so close() can end the connection; the
  // transport would otherwise create one we cannot reach.
  const sessionManager = new Http2SessionManager(url);
  const transport = createGrpcTransport({
    baseUrl: url.toString(),
    sessionManager,
    // The first interceptor is the outermost: each retry passes through
    // authentication and the caller's interceptors again.
    interceptors: [retryUnavailable(options.retry), bearerAuth(options.apiKey), ...(options.interceptors ?? [])],
    ...(options.timeoutMs === undefined ? {} : { defaultTimeoutMs: options.timeoutMs }),
  });
  const clients = Object.fromEntries(
    Object.entries(services).map(([name, service]) => [name, createServiceClient(service, transport)]),
  ) as unknown as ServiceClients;
  return {
    ...clients,
    close: () => sessionManager.abort(),
  };
}

function parseBaseUrl(baseUrl: string): URL {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new TypeError(`hookplane: baseUrl must be a URL such as http://127.0.0.1:50051, got ${JSON.stringify(baseUrl)}`);
  }
  // `localhost:50051` parses as a URL of scheme "localhost:"; insisting on
  // http or https keeps a missing scheme from failing later and obscurely.
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`hookplane: baseUrl must start with http:// or https://, got ${JSON.stringify(baseUrl)}`);
  }
  return url;
}
