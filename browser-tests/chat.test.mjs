// The chat-web example (crates/duplex-hub/examples/chat-web.rs) driven by a real
// browser: Debian's Chromium through playwright-core, with node's own test runner.
//
//   cargo build -p duplex-hub --features tokio,redis --example chat-web
//   cd browser-tests && npm ci && node --test
//
// Environment: CARGO_TARGET_DIR (where the example was built; relative to the
// repository root, default target), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT (default target/browser-tests/chat.png, so a test run leaves the work tree
// clean; docs/chat.png is that file copied by hand when the page changes).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

import { ROOT, CHROMIUM, CHROMIUM_ARGS, startServer, stopServer } from "./common.mjs";

const SCREENSHOT = path.resolve(ROOT, process.env.SCREENSHOT || "target/browser-tests/chat.png");
const ROOM = `ci-${process.pid}`;
const MIB = 1 << 20;
const WAIT = 15_000;

/** The same bytes in the page and here: text-like runs (compressible) and noise. */
function makePayload(n) {
  const bytes = new Uint8Array(n);
  const words = new TextEncoder().encode("duplex permessage-deflate over hyper, checked in Chromium. ");
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    if ((i >> 12) % 4 === 3) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      bytes[i] = x & 0xff;
    } else {
      bytes[i] = words[i % words.length];
    }
  }
  return bytes;
}

async function stats(base) {
  const response = await fetch(`${base}/stats`);
  assert.equal(response.status, 200);
  return response.json();
}

async function connectionOf(base, nick) {
  const all = (await stats(base)).connections.filter((c) => c.room === ROOM && c.nick === nick);
  assert.ok(all.length > 0, `no connection of ${nick} in /stats`);
  return all[all.length - 1];
}

async function join(page, base, nick) {
  await page.goto(`${base}/`);
  await page.fill("#nick", nick);
  await page.fill("#room", ROOM);
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

describe("chat-web in Chromium", () => {
  let server;
  let base;
  let context;
  let alice;
  let bob;
  let profile;
  let version;

  before(async () => {
    server = await startServer();
    base = `http://${server.addr}`;
    profile = mkdtempSync(path.join(tmpdir(), "duplex-chromium-"));
    version = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim().split("\n").pop();
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 960, height: 600 },
    });
    console.log(`# chromium: ${version}`);
    for (const page of context.pages()) await page.close();
    alice = await context.newPage();
    bob = await context.newPage();
    for (const [name, page] of [["alice", alice], ["bob", bob]]) {
      page.on("pageerror", (error) => console.log(`# ${name} page error: ${error}`));
    }
  });

  after(async () => {
    await context?.close();
    if (server) await stopServer(server.child);
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it("two pages join the same room and see each other's messages", async () => {
    await join(alice, base, "alice");
    await join(bob, base, "bob");
    await alice.locator(".notice", { hasText: "bob joined" }).waitFor({ timeout: WAIT });
    await alice.fill("#text", "hello from alice");
    await alice.press("#text", "Enter");
    await messageIn(bob, "alice", "hello from alice");
    await bob.fill("#text", "hi alice, bob here — ünïcödé ✓");
    await bob.click("#send");
    await messageIn(alice, "bob", "hi alice, bob here — ünïcödé ✓");
    const members = await bob.locator("#member-list li").allTextContents();
    assert.deepEqual(members, ["alice", "bob"]);
  });

  it("Chromium offered and negotiated permessage-deflate, and compressed frames flowed", async () => {
    for (const nick of ["alice", "bob"]) {
      const c = await connectionOf(base, nick);
      console.log(`# ${nick}: Sec-WebSocket-Extensions offered: ${c.extensions_offered}`);
      console.log(`# ${nick}: negotiated: ${c.extensions_negotiated}`);
      assert.match(c.extensions_offered ?? "", /permessage-deflate/);
      assert.match(c.extensions_negotiated ?? "", /^permessage-deflate/);
      assert.equal(c.deflate, true);
      assert.equal(c.http, "HTTP/1.1");
      assert.ok(c.text_received >= 1, `${nick} sent no text`);
      assert.ok(c.compressed_messages_received >= 1, `no compressed message from ${nick}'s page`);
      assert.ok(c.compressed_messages_sent >= 1, `no compressed message to ${nick}'s page`);
    }
    // duplex-tokio's own counters agree.
    const server = (await stats(base)).server;
    console.log(`# ServerStats: ${JSON.stringify(server)}`);
    assert.ok(server.open >= 2 && server.messages_received >= 2 && server.bytes_received > 0);
    const ua = (await connectionOf(base, "alice")).user_agent;
    assert.match(ua, /Chrome\/\d+/);
  });

  it("a 1 MiB message from the page arrives intact", async () => {
    await alice.evaluate(`window.makePayload = ${makePayload.toString()}`);
    const receipt = await alice.evaluate(async (n) => {
      const bytes = window.makePayload(n);
      const receipt = await window.duplexChat.sendBinary(bytes);
      return { ...receipt, pageCrc: window.duplexChat.crc32(bytes) };
    }, MIB);
    const expected = zlib.crc32(makePayload(MIB)).toString(16).padStart(8, "0");
    assert.equal(receipt.bytes, MIB);
    assert.equal(receipt.pageCrc, expected);
    assert.equal(receipt.crc32, expected);
    const c = await connectionOf(base, "alice");
    assert.equal(c.largest_message, MIB);
    assert.ok(c.binary_received >= 1);
    console.log(
      `# 1 MiB binary: crc32 ${receipt.crc32}, ${c.wire_bytes_received} bytes on the wire from alice, ` +
        `${c.compressed_messages_received} of ${c.messages_received} messages compressed`,
    );
    // Compressed on the wire: a quarter of the payload is noise, the rest compresses well.
    assert.ok(c.wire_bytes_received < MIB, "the 1 MiB message was not compressed");
  });

  it("closing a page announces the leave to the other", async () => {
    await bob.close();
    await alice.locator(".notice", { hasText: "bob left" }).waitFor({ timeout: WAIT });
    assert.deepEqual(await alice.locator("#member-list li").allTextContents(), ["alice"]);
    const c = await connectionOf(base, "bob");
    assert.equal(c.open, false);
  });

  it("screenshot of the chat page", async () => {
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await alice.screenshot({ path: SCREENSHOT });
    console.log(`# screenshot: ${path.relative(ROOT, SCREENSHOT)}`);
  });

  it("the page reconnects with backoff when the server comes back", async () => {
    const addr = server.addr;
    await stopServer(server.child);
    await alice.waitForSelector('#state[data-state="reconnecting"]', { timeout: WAIT });
    server = await startServer(addr);
    await alice.waitForSelector('#state[data-state="open"]', { timeout: 30_000 });
    // The new process has a new epoch for the room: the page resumed with its old
    // position and says that what it missed cannot be recovered.
    await alice.locator(".notice.lost", { hasText: "not recovered" }).waitFor({ timeout: WAIT });
    await alice.fill("#text", "back again");
    await alice.press("#text", "Enter");
    await messageIn(alice, "alice", "back again");
  });
});
