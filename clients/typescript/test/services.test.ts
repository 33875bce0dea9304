// The client covers every service the generated code has, so a service
// added to proto/ fails here until createClient exposes it.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { test } from "node:test";
import type { GenFile } from "@bufbuild/protobuf/codegenv2";
import { createClient, internalServices, services } from "@hookplane/sdk";

/** Every service in the generated hookplane.v1 files, by full name. */
async function generatedServices(): Promise<string[]> {
  const dir = join(dirname(fileURLToPath(import.meta.resolve("@hookplane/sdk"))), "gen", "hookplane", "v1");
  const names: string[] = [];
  for (const file of (await readdir(dir)).filter((f) => f.endsWith("_pb.js")).sort()) {
    const module = (await import(pathToFileURL(join(dir, file)).href)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(module)) {
      if (name.startsWith("file_")) {
        names.push(...(value as GenFile).services.map((s) => s.typeName));
      }
    }
  }
  return names.sort();
}

test("createClient exposes every public service of proto/hookplane/v1", async () => {
  const generated = await generatedServices();
  assert.ok(generated.includes("hookplane.v1.ConnectorService"), `found ${generated.join(", ")}`);
  const exposed = Object.values(services).map((s) => s.typeName);
  assert.deepEqual([...exposed, ...internalServices].sort(), generated);

  const client = createClient({ baseUrl: "http://127.0.0.1:1", apiKey: "hpk_unused" });
  for (const [name, service] of Object.entries(services)) {
    const methods = Object.keys((client as unknown as Record<string, Record<string, unknown>>)[name] ?? {});
    assert.deepEqual(methods.sort(), service.methods.map((m) => m.localName).sort(), `${name} has every RPC`);
  }
  client.close();
});

test("createClient refuses a base URL without a scheme and an empty key", () => {
  for (const baseUrl of ["127.0.0.1:50051", "localhost:50051"]) {
    assert.throws(() => createClient({ baseUrl, apiKey: "hpk_x" }), /baseUrl must/);
  }
  assert.throws(() => createClient({ baseUrl: "http://127.0.0.1:50051", apiKey: " \n" }), /apiKey is empty/);
  assert.throws(
    () => createClient({ baseUrl: "http://127.0.0.1:50051", apiKey: "hpk_x", retry: { maxAttempts: 0 } }),
    /maxAttempts/,
  );
});
