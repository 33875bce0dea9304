// Where the hookplane dev under test is. The Rust harness
// (cli/tests/typescript_client.rs) starts one and sets these; a missing one
// fails the suite rather than skipping it.
import { readFileSync } from "node:fs";

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(
      `${name} is not set: run the suite through cli/tests/typescript_client.rs, or start \`hookplane dev\` and set ` +
        "HOOKPLANE_GRPC, HOOKPLANE_HTTP, HOOKPLANE_ADMIN_KEY_FILE and HOOKPLANE_BIN (see README.md)",
    );
  }
  return value;
}

/** The gRPC API's URL, from its address as `hookplane dev` prints it (`127.0.0.1:PORT`). */
export function grpcUrl(): string {
  return `http://${required("HOOKPLANE_GRPC")}`;
}

/** The data plane's base URL (`http://127.0.0.1:PORT`), to which trigger paths are appended. */
export function triggerBase(): string {
  return required("HOOKPLANE_HTTP").replace(/\/+$/, "");
}

/** The default organization's admin key. */
export function adminKey(): string {
  return readFileSync(required("HOOKPLANE_ADMIN_KEY_FILE"), "utf8").trim();
}

/** The hookplane binary, for tests that start a server of their own. */
export function hookplaneBinary(): string {
  return required("HOOKPLANE_BIN");
}
