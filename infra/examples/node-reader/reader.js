// A read-through reader of the redis-spanner cache, written from schemas/CONTRACT.md alone.
//
// An entry is a Redis hash: v (version, 20 digits), s ("v" value, "t" tombstone), d (JSON).
// A tombstone is a miss. Anything else at the key is foreign, and a miss too. Every write goes
// through the shipped guard script (schemas/guard.lua), so a fill never overwrites a newer
// version and never lands on a newer tombstone.
//
//   node reader.js get KEY                  -> {"state": "hit"|"miss"|"tombstone"|"foreign", ...}
//   node reader.js fill KEY VERSION JSON    -> {"applied": true|false, "previous": ...}
//   node reader.js through KEY VERSION JSON -> a read that, on a miss, fills with JSON read at
//                                              VERSION (a stand-in for a Spanner snapshot read)
//
// Environment: REDIS_URL; REDIS_SPANNER_GUARD (path of guard.lua, default: this repository's
// schemas/guard.lua); REDIS_SPANNER_CACHE_TTL_SECONDS (86400);
// REDIS_SPANNER_MAX_VERSION_SKEW_SECONDS (3600).
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createClient } = require("redis");

const VERSION_WIDTH = 20;
const GUARD_PATH = process.env.REDIS_SPANNER_GUARD
  || path.join(__dirname, "..", "..", "..", "schemas", "guard.lua");
const CACHE_TTL_MS = 1000 * Number(process.env.REDIS_SPANNER_CACHE_TTL_SECONDS || 86400);
const MAX_SKEW_NS = BigInt(
  Math.round(1e9 * Number(process.env.REDIS_SPANNER_MAX_VERSION_SKEW_SECONDS || 3600)));

/** A version as the cache stores it: nanoseconds, zero-padded to 20 digits. */
function encodeVersion(nanos) {
  return BigInt(nanos).toString().padStart(VERSION_WIDTH, "0");
}

/** The newest version accepted now: this clock plus the allowed skew. */
function ceiling() {
  return encodeVersion(BigInt(Date.now()) * 1000000n + MAX_SKEW_NS);
}

/** What a key's hash means, by the contract's rules (the guard's own). */
function classify(fields, top = ceiling()) {
  if (Object.keys(fields).length === 0) return { state: "miss" };
  const version = fields.v;
  if (version === undefined) return { state: "foreign", kind: "unversioned" };
  if (version.length !== VERSION_WIDTH || !/^[0-9]+$/.test(version)) {
    return { state: "foreign", kind: "bad-version" };
  }
  // Equal widths: string order is numeric order (no 64-bit number needed).
  if (version > top) return { state: "foreign", kind: "future-version" };
  if (fields.s === "t") return { state: "tombstone", version };
  if (fields.s === "v" && fields.d !== undefined) {
    return { state: "hit", version, value: JSON.parse(fields.d) };
  }
  return { state: "foreign", kind: "bad-state" };
}

async function get(client, key) {
  try {
    return classify(await client.hGetAll(key));
  } catch (error) {
    if (String(error.message).startsWith("WRONGTYPE")) return { state: "foreign", kind: "wrong-type" };
    throw error;
  }
}

/** Write a value read at `version` through the guard: refused if the key holds that version
 * or a newer one (value or tombstone). */
async function fill(client, guard, key, version, json) {
  const [applied, previous, foreign] = await client.eval(guard, {
    keys: [key],
    arguments: ["set", encodeVersion(version), json, String(CACHE_TTL_MS), ceiling()],
  });
  return { applied: applied === 1, previous: previous || null, foreign: foreign || null };
}

/** Redis first; on a miss, a tombstone or a foreign entry, `load()` reads the source of truth
 * and answers {version, json}; the value is written through the guard and served. */
async function readThrough(client, guard, key, load) {
  const cached = await get(client, key);
  if (cached.state === "hit") return { hit: true, value: cached.value, version: cached.version };
  const { version, json } = await load();
  const written = await fill(client, guard, key, version, json);
  return { hit: false, value: JSON.parse(json), version: encodeVersion(version),
           filled: written.applied };
}

async function main(argv) {
  const [command, key, version, json] = argv;
  const usage = "usage: reader.js get KEY | fill KEY VERSION JSON | through KEY VERSION JSON";
  if (!key || !["get", "fill", "through"].includes(command)
      || (command !== "get" && (!/^[0-9]+$/.test(version || "") || json === undefined))) {
    console.error(usage);
    return 2;
  }
  if (!process.env.REDIS_URL) {
    console.error("reader.js: REDIS_URL is not set");
    return 2;
  }
  const guard = fs.readFileSync(GUARD_PATH, "utf8");
  const client = createClient({
    url: process.env.REDIS_URL,
    socket: { connectTimeout: 5000, reconnectStrategy: false },
  });
  client.on("error", () => {});  // connection errors surface on the command that fails
  try {
    await client.connect();
    let result;
    if (command === "get") result = await get(client, key);
    else if (command === "fill") result = await fill(client, guard, key, version, json);
    else result = await readThrough(client, guard, key, async () => ({ version, json }));
    console.log(JSON.stringify(result));
    return 0;
  } catch (error) {
    console.error(`reader.js: ${error.message} (REDIS_URL)`);
    return 1;
  } finally {
    if (client.isOpen) await client.quit();
  }
}

module.exports = { classify, get, fill, readThrough, encodeVersion };

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
