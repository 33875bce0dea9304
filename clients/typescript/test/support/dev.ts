// Starts a `hookplane dev` of the test's own, for the tests that need a
// server to appear only after the client started calling.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hookplaneBinary } from "./env.js";

/** A port nothing listens on now: bound by the kernel's choice, then released. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") {
    throw new Error("no port from the probe server");
  }
  return address.port;
}

/**
 * A fresh data directory holding an operator key of our choosing: `dev`
 * keeps key files it finds, so the key is known before the server exists
 * and a client can be pointed at the server before it starts.
 */
export function dataDirWithOperatorKey(): { dataDir: string; operatorKey: string; remove(): void } {
  const root = mkdtempSync(join(tmpdir(), "hookplane-ts-"));
  const dataDir = join(root, "data");
  mkdirSync(dataDir, { mode: 0o700 });
  // The shape dev mints (`hpo_` and 32 alphanumerics); the server only
  // compares its hash.
  const operatorKey = `hpo_${randomBytes(16).toString("hex")}`;
  // dev refuses key files others can read.
  writeFileSync(join(dataDir, "operator-key"), `${operatorKey}\n`, { mode: 0o600 });
  return { dataDir, operatorKey, remove: () => rmSync(root, { recursive: true, force: true }) };
}

export interface DevServer {
  /** The gRPC address it printed, `127.0.0.1:PORT`. */
  grpcAddress: string;
  stop(): Promise<void>;
}

/** Starts `hookplane dev` on `grpcPort` and waits until it prints its gRPC address. */
export async function startDev(dataDir: string, grpcPort: number): Promise<DevServer> {
  const child = spawn(
    hookplaneBinary(),
    ["dev", "--grpc-listen", `127.0.0.1:${grpcPort}`, "--http-listen", "127.0.0.1:0", "--data-dir", dataDir],
    { env: { ...serverEnv(), HOOKPLANE_LOG: "warn" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const grpcAddress = await new Promise<string>((resolve, reject) => {
    let stdout = "";
    const timer = setTimeout(() => reject(new Error(`hookplane dev printed no address in 60 s; stderr: ${stderr}`)), 60_000);
    // Keep reading stdout after the address line: a full pipe would block
    // the server's next print.
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      const match = /gRPC API \(reflection on\):\s*(\S+)/.exec(stdout);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`hookplane dev exited (${code ?? signal}) before printing its address; stderr: ${stderr}`));
    });
  });
  return {
    grpcAddress,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
      }
      await exited;
    },
  };
}

/**
 * This process's environment without HOOKPLANE_* variables: hookplane reads
 * every one of them as a setting and refuses unknown ones, and the suite's
 * own (HOOKPLANE_GRPC, HOOKPLANE_BIN, …) would stop it from starting.
 */
function serverEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("HOOKPLANE_")));
}
