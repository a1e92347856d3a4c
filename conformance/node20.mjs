// Node 20 only: @modelcontextprotocol/conformance 0.1.16 imports fs.globSync (Node 22) when it loads,
// for its tier-check command alone, so on Node 20 no scenario would run. This loader hook (node --import)
// hands that package an fs whose globSync says what it needs; nothing else sees it.
import { register } from "node:module";
import { isMainThread } from "node:worker_threads";

const FS_WITH_GLOBSYNC = `data:text/javascript,${encodeURIComponent(`
export * from "node:fs";
import fs from "node:fs";
export default fs;
export const globSync = fs.globSync ?? (() => { throw new Error("fs.globSync needs Node 22"); });
`)}`;

if (isMainThread) register(import.meta.url);

export async function resolve(specifier, context, next) {
  if ((specifier === "fs" || specifier === "node:fs") && context.parentURL?.includes("/@modelcontextprotocol/conformance/")) {
    return { url: FS_WITH_GLOBSYNC, shortCircuit: true };
  }
  return next(specifier, context);
}
