import { createClient, type ClientOptions, type HookplaneClient } from "@hookplane/sdk";
import { adminKey, grpcUrl } from "./env.js";

/** A client of the server under test with the default organization's admin key. */
export function adminClient(options: Partial<ClientOptions> = {}): HookplaneClient {
  return createClient({ baseUrl: grpcUrl(), apiKey: adminKey(), ...options });
}
