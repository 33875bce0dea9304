// The hand-written surface of @hookplane/sdk; everything under ./gen is
// generated from proto/ by `npm run generate`.
export { createClient, type ClientOptions, type HookplaneClient, type ServiceClients } from "./client.js";
export { bearerAuth } from "./auth.js";
export { retryUnavailable, backoffDelayMs, DEFAULT_RETRY, type RetryOptions } from "./retry.js";
export { paginate, type PageRequest, type PageResponse } from "./paginate.js";
export { parseError, type FieldViolation, type HookplaneError } from "./errors.js";
export { services, internalServices } from "./services.js";
// Callers compare codes and catch errors with these; re-exported so they
// come from the same copy of @connectrpc/connect the client uses.
export { Code, ConnectError, type CallOptions, type Interceptor } from "@connectrpc/connect";
// Building messages by hand (`create(ConnectorSchema, {...})`) and typing a
// request's plain-object form (`MessageInitShape<typeof ConnectorSchema>`).
export { create, type MessageInitShape } from "@bufbuild/protobuf";

// The API's messages, enums and service descriptors: every file generated
// from proto/hookplane/v1, listed by `npm run generate`.
export * from "./gen/hookplane/v1/index.js";
