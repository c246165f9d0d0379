// Two chat-web nodes sharing one redis-server (`--redis`), in Chromium: a page on one
// node chats with a page on the other and both see each other in the member list (the
// hub's presence); when a node is killed (SIGKILL), the page on it reconnects to the
// other node, resumes from its last (epoch, offset), ends with every message exactly
// once, and the member lists stay right (a move is neither a leave nor a join); when
// the room's history is lost (Redis flushed), the pages reload the room and say so.
// Then, on a second pair of nodes: a page whose node dies while Redis is stopped
// (SIGSTOP) is told on the other node that the hub cannot read the history yet
// ("unavailable"); it resumes from its last position again later rather than reload,
// and once Redis is back (SIGCONT) gets every missed message exactly once.
//
// The test starts its own redis-server (Debian's package) on a free 127.0.0.1 port in a
// temporary directory, without persistence, and stops it. REDIS_SERVER overrides the
// program (default redis-server on the PATH).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, startServer, stopServer } from "./common.mjs";

const REDIS = process.env.REDIS_SERVER || "redis-server";
const ROOM = `nodes-${process.pid}`;
const WAIT = 15_000;
const LINES = 40;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), "duplex-redis-"));
  const child = spawn(
    REDIS,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: "ignore" },
  );
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => { socket.end(); resolve(true); });
      socket.once("error", () => resolve(false));
    });
    if (up) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error("redis-server did not start");
    await sleep(20);
  }
  return { child, dir, url: `redis://127.0.0.1:${port}/` };
}

const haveRedis = spawnSync(REDIS, ["--version"]).status === 0;
if (!haveRedis && process.env.CI) throw new Error(`${REDIS} is missing (apt-get install -y redis-server)`);

async function join(page, base, peer, nick, room = ROOM) {
  await page.goto(`${base}/?nodes=${peer}`);
  await page.fill("#nick", nick);
  await page.fill("#room", room);
  await page.click("#join-button");
  await page.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
}

function messageIn(page, nick, text) {
  return page
    .locator("#log .msg", { has: page.locator(".nick", { hasText: nick }) })
    .filter({ has: page.locator(".text", { hasText: text }) })
    .first()
    .waitFor({ timeout: WAIT });
}

/**
 * A redis-server, two chat-web nodes on it and a Chromium profile with one page per
 * name (page errors printed).
 */
async function twoNodes(names) {
  const redis = await startRedis();
  const a = await startServer("127.0.0.1:0", ["--redis", redis.url]);
  const b = await startServer("127.0.0.1:0", ["--redis", redis.url]);
  const profile = mkdtempSync(path.join(tmpdir(), "duplex-chromium-nodes-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 960, height: 600 },
  });
  for (const page of context.pages()) await page.close();
  const pages = [];
  for (const name of names) {
    const page = await context.newPage();
    page.on("pageerror", (error) => console.log(`# ${name} page error: ${error}`));
    pages.push(page);
  }
  return { redis, a, b, profile, context, pages };
}

/** Stops what `twoNodes` started (a stopped redis-server too). */
async function stopAll({ redis, a, b, profile, context }) {
  await context?.close();
  for (const node of [a, b]) if (node) await stopServer(node.child);
  if (redis) {
    redis.child.kill("SIGCONT");
    redis.child.kill("SIGKILL");
    rmSync(redis.dir, { recursive: true, force: true });
  }
  if (profile) rmSync(profile, { recursive: true, force: true });
}

describe("two chat-web nodes on one Redis, in Chromium", { skip: !haveRedis && `${REDIS} is not installed` }, () => {
  let redis;
  let a;
  let b;
  let context;
  let alice;
  let bob;
  const all = {};

  before(async () => {
    Object.assign(all, await twoNodes(["alice", "bob"]));
    ({ redis, a, b, context } = all);
    [alice, bob] = all.pages;
  });

  after(() => stopAll(all));

  it("a page on node A chats with a page on node B", async () => {
    await join(alice, `http://${a.addr}`, b.addr, "alice");
    await join(bob, `http://${b.addr}`, a.addr, "bob");
    assert.equal(await alice.evaluate(() => window.duplexChat.node()), a.addr);
    assert.equal(await bob.evaluate(() => window.duplexChat.node()), b.addr);
    // Bob's join, published on B, reaches alice on A.
    await alice.locator(".notice", { hasText: "bob joined" }).waitFor({ timeout: WAIT });
    await alice.fill("#text", "hello from node A");
    await alice.press("#text", "Enter");
    await messageIn(bob, "alice", "hello from node A");
    await bob.fill("#text", "hello from node B");
    await bob.press("#text", "Enter");
    await messageIn(alice, "bob", "hello from node B");
    // Each page lists both members, whichever node they are on.
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => window.duplexChat.members().join() === "alice,bob", null, { timeout: WAIT });
    }
    assert.deepEqual(await alice.locator("#member-list li").allTextContents(), ["alice", "bob"]);
  });

  it("node A is killed mid-stream: its page resumes on B with every message exactly once", async () => {
    const lines = Array.from({ length: LINES }, (_, i) => `line ${String(i).padStart(3, "0")}`);
    // Bob (on B) says a line every 25 ms; node A dies after the tenth.
    const saying = bob.evaluate(async (lines) => {
      for (const line of lines) {
        if (!window.duplexChat.sendText(line)) throw new Error(`bob could not send ${line}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }, lines);
    await messageIn(alice, "bob", lines[9]);
    const before = await alice.evaluate(() => window.duplexChat.positions());
    a.child.kill("SIGKILL");
    await saying;
    // Alice's page notices, moves to B and resumes after its last position.
    await alice.waitForFunction((node) => window.duplexChat.node() === node, b.addr, { timeout: WAIT });
    await alice.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
    await messageIn(alice, "bob", lines[LINES - 1]);
    // A last line after the move arrives too (live on B).
    await alice.fill("#text", "alice, now on node B");
    await alice.press("#text", "Enter");
    await messageIn(bob, "alice", "alice, now on node B");
    await messageIn(alice, "alice", "alice, now on node B");

    const texts = await alice.locator("#log .msg .text").allTextContents();
    for (const line of lines) {
      assert.equal(texts.filter((t) => t === line).length, 1, `${line} shown exactly once`);
    }
    const order = texts.filter((t) => t.startsWith("line "));
    assert.deepEqual(order, lines, "in order");
    // Every event's position, in arrival order: one epoch, offsets one after another.
    const seen = await alice.evaluate(() => window.duplexChat.seen());
    const epochs = new Set(seen.map(([epoch]) => epoch));
    assert.equal(epochs.size, 1, "one epoch");
    for (let i = 1; i < seen.length; i++) {
      assert.equal(seen[i][1], seen[i - 1][1] + 1, `offset after ${seen[i - 1][1]}: no gap, no repeat`);
    }
    assert.equal(await alice.evaluate(() => window.duplexChat.lost()), 0, "no 'not recovered' notice");
    const resumed = await alice.locator(".divider", { hasText: "resumed on" }).allTextContents();
    const after = await alice.evaluate(() => window.duplexChat.positions());
    console.log(`# alice: position before the kill ${JSON.stringify(before[ROOM])}, at the end ${JSON.stringify(after[ROOM])}; ${resumed.join("; ")}`);
    assert.equal(resumed.length, 1);
    // The move was no leave and no join: both lists unchanged, no notice of either.
    for (const page of [alice, bob]) {
      assert.deepEqual(await page.evaluate(() => window.duplexChat.members()), ["alice", "bob"]);
    }
    const bobNotices = await bob.locator("#log .notice").allTextContents();
    assert.equal(bobNotices.filter((t) => t.includes("alice left")).length, 0, "no leave for a move");
    assert.equal(bobNotices.filter((t) => t.includes("alice joined")).length, 0, "no second join");
  });

  it("the room's history is lost: both pages reload the room and say so", async () => {
    const port = new URL(redis.url).port;
    const flushed = spawnSync("redis-cli", ["-p", port, "flushall"]);
    assert.equal(flushed.status, 0, "redis-cli flushall");
    for (const page of [alice, bob]) {
      // The node's next sync sees the history gone: a notice, which the page acts on.
      await page.waitForFunction(
        () => window.duplexChat.recoveries().some((r) => r.kind === "reload" && r.reason === "epoch_changed"),
        null,
        { timeout: WAIT },
      );
      await page.locator(".divider", { hasText: "reloaded #" }).waitFor({ timeout: WAIT });
      await page.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
    }
    // Chat goes on in the new epoch, and the member lists come back (each node writes
    // its members again at its next heartbeat).
    await bob.fill("#text", "after the flush");
    await bob.press("#text", "Enter");
    await messageIn(alice, "bob", "after the flush");
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => window.duplexChat.members().join() === "alice,bob", null, { timeout: 20_000 });
    }
  });

  it("a resume that cannot be recovered is shown as such", async () => {
    // A position of an epoch the room never had: the server says "not recovered".
    const page = await context.newPage();
    await page.goto(`http://${b.addr}/`);
    const welcome = await page.evaluate(async ([room]) => {
      const ws = new WebSocket(`ws://${location.host}/ws?room=${room}&nick=carol&epoch=12345&offset=3`);
      return new Promise((resolve, reject) => {
        ws.onmessage = (e) => { resolve(JSON.parse(e.data)); ws.close(); };
        ws.onerror = () => reject(new Error("WebSocket failed"));
      });
    }, [ROOM]);
    assert.equal(welcome.type, "welcome");
    assert.equal(welcome.resumed, 0);
    assert.match(welcome.lost ?? "", /epoch/);
    await page.close();
  });
});

describe("the hub cannot read the history for a while: the page resumes later, in Chromium", { skip: !haveRedis && `${REDIS} is not installed` }, () => {
  const room = `unavailable-${process.pid}`;
  let redis;
  let a;
  let b;
  let context;
  let carol;
  let dave;
  const all = {};

  before(async () => {
    Object.assign(all, await twoNodes(["carol", "dave"]));
    ({ redis, a, b, context } = all);
    [carol, dave] = all.pages;
  });

  after(() => stopAll(all));

  it("a resume answered 'unavailable' is tried again and recovers every message once", async () => {
    await join(carol, `http://${a.addr}`, b.addr, "carol", room);
    await join(dave, `http://${b.addr}`, a.addr, "dave", room);
    for (const page of [carol, dave]) {
      await page.waitForFunction(() => window.duplexChat.members().join() === "carol,dave", null, { timeout: WAIT });
    }
    const lines = Array.from({ length: 20 }, (_, i) => `event ${String(i).padStart(2, "0")}`);
    const say = (some) => dave.evaluate(async (some) => {
      for (const line of some) {
        if (!window.duplexChat.sendText(line)) throw new Error(`dave could not send ${line}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }, some);
    await say(lines.slice(0, 10));
    await messageIn(carol, "dave", lines[9]);
    // Node A freezes (carol's connection stays open, silent) while dave says ten more
    // lines on B; then Redis stops, and A dies: carol's page moves to B, whose hub
    // cannot read the lines she missed.
    a.child.kill("SIGSTOP");
    await say(lines.slice(10));
    await messageIn(dave, "dave", lines[19]);
    redis.child.kill("SIGSTOP");
    a.child.kill("SIGKILL");
    await carol.waitForFunction(
      () => window.duplexChat.recoveries().some((r) => r.kind === "resume" && r.reason === "unavailable"),
      null,
      { timeout: WAIT },
    );
    redis.child.kill("SIGCONT");
    await carol.waitForFunction((node) => window.duplexChat.node() === node, b.addr, { timeout: WAIT });
    await messageIn(carol, "dave", lines[19]);
    await carol.waitForSelector('#state[data-state="open"]', { timeout: WAIT });

    const texts = await carol.locator("#log .msg .text").allTextContents();
    assert.deepEqual(texts.filter((t) => t.startsWith("event ")), lines, "every line once, in order");
    const seen = await carol.evaluate(() => window.duplexChat.seen());
    assert.equal(new Set(seen.map(([epoch]) => epoch)).size, 1, "one epoch");
    for (let i = 1; i < seen.length; i++) {
      assert.equal(seen[i][1], seen[i - 1][1] + 1, `offset after ${seen[i - 1][1]}: no gap, no repeat`);
    }
    const recoveries = await carol.evaluate(() => window.duplexChat.recoveries());
    assert.ok(recoveries.every((r) => r.kind === "resume" && r.reason === "unavailable"), `no reload: ${JSON.stringify(recoveries)}`);
    const resumed = await carol.locator(".divider", { hasText: "resumed on" }).allTextContents();
    console.log(`# carol: ${JSON.stringify(recoveries)}; ${resumed.join("; ")}`);
    assert.ok(resumed.some((t) => t.includes("10 recovered from the hub")), resumed.join("; "));
    // Her move was no leave: both pages still list both members.
    for (const page of [carol, dave]) {
      assert.deepEqual(await page.evaluate(() => window.duplexChat.members()), ["carol", "dave"]);
    }
  });
});
