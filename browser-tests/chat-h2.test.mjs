// chat-web over HTTPS (`--tls`, a self-signed certificate) in Chromium: the page comes
// over HTTP/2, and the WebSocket is an extended CONNECT (RFC 8441) on that same HTTP/2
// connection, which the server's /stats shows (the handshake's HTTP version and the
// TLS connection it came on, next to the page load's).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, startServer, stopServer } from "./common.mjs";

const ROOM = `h2-${process.pid}`;
const WAIT = 15_000;

describe("chat-web over HTTP/2 in Chromium", () => {
  let server;
  let base;
  let context;
  let page;
  let profile;

  before(async () => {
    server = await startServer("127.0.0.1:0", ["--tls"]);
    base = `https://${server.addr}`;
    profile = mkdtempSync(path.join(tmpdir(), "duplex-chromium-h2-"));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      // The certificate is self-signed, made by the server at start.
      args: [...CHROMIUM_ARGS, "--ignore-certificate-errors"],
      viewport: { width: 960, height: 600 },
    });
    for (const p of context.pages()) await p.close();
    page = await context.newPage();
    page.on("pageerror", (error) => console.log(`# page error: ${error}`));
  });

  after(async () => {
    await context?.close();
    if (server) await stopServer(server.child);
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  /** /stats, fetched by the page (so over its own connection, and trusted). */
  function stats() {
    return page.evaluate(async () => (await fetch("/stats")).json());
  }

  it("the page loads over HTTP/2 and its WebSocket is a CONNECT on the same connection", async () => {
    await page.goto(`${base}/`);
    const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
    console.log(`# page protocol: ${protocol}`);
    assert.equal(protocol, "h2");
    await page.fill("#nick", "carol");
    await page.fill("#room", ROOM);
    await page.click("#join-button");
    await page.waitForSelector('#state[data-state="open"]', { timeout: WAIT });
    await page.fill("#text", "hello over RFC 8441");
    await page.press("#text", "Enter");
    await page
      .locator("#log .msg", { has: page.locator(".text", { hasText: "hello over RFC 8441" }) })
      .first()
      .waitFor({ timeout: WAIT });

    const s = await stats();
    const ws = s.connections.filter((c) => c.room === ROOM && c.nick === "carol").pop();
    assert.ok(ws, "carol's WebSocket is not in /stats");
    const pageLoad = s.pages.filter((p) => p.http === "HTTP/2").pop();
    console.log(`# WebSocket handshake: ${ws.http} on connection ${ws.conn}; page: ${JSON.stringify(s.pages)}`);
    assert.equal(ws.http, "HTTP/2", "the WebSocket was not opened with an HTTP/2 CONNECT");
    assert.ok(pageLoad, "no page load over HTTP/2");
    assert.equal(ws.conn, pageLoad.conn, "the WebSocket did not share the page's HTTP/2 connection");
    // permessage-deflate works over HTTP/2 as well.
    assert.match(ws.extensions_negotiated ?? "", /^permessage-deflate/);
    assert.ok(ws.compressed_messages_received >= 1, "no compressed message from the page");
  });
});
