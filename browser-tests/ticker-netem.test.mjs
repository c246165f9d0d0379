// The ticker seen from Chromium across the emulated link (`cargo xtask netem`):
// Chromium runs in the link's client namespace, the ticker example in its server
// namespace, and the page receives the feed through fetch polling, long polling,
// EventSource and WebSocket, measuring latency from the publish timestamp in the page.
// At the same time, `cargo xtask seed-compare --url` runs one Rust client of the same
// transport in the same namespace; the two medians must agree within a stated margin.
//
// Needs root, /dev/net/tun and Chromium: without them it says why and passes, unless
// CI is set. NETEM_PROFILE (default 4g) and NETEM_SECONDS (default 8 per transport)
// change the run; it prints a Markdown table of what it measured.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, ROOT } from "./common.mjs";

const PROFILE = process.env.NETEM_PROFILE || "4g";
const SECONDS = Number(process.env.NETEM_SECONDS || 8);
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || "target");
const XTASK = path.join(TARGET, "debug", "xtask");
const TICKER = path.join(TARGET, "debug", "examples", "ticker");

// The page's transports and the Rust client's names for them.
const TRANSPORTS = [
  ["poll", "poll"],
  ["long", "long-poll"],
  ["sse", "sse"],
  ["ws0", "ws"],
];

function unavailable() {
  if (process.getuid && process.getuid() !== 0) return "the emulated link needs root";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is missing";
  if (!existsSync(CHROMIUM)) return `Chromium is missing at ${CHROMIUM} (bash browser-tests/install.sh)`;
  return null;
}

/** The first line of `child`'s stdout that matches `pattern`, within 60 s. */
function firstMatch(child, pattern, what) {
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} within 60 s`)), 60_000);
    child.once("exit", (code) => reject(new Error(`${what}: exited with ${code}`)));
    lines.on("line", (line) => {
      const match = pattern.exec(line);
      if (match) {
        clearTimeout(timer);
        child.removeAllListeners("exit");
        resolve(match);
      }
    });
  });
}

function stop(child, signal = "SIGTERM") {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : NaN;
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.round((sorted.length - 1) * p)] : NaN;
}

const why = unavailable();
if (why && process.env.CI) throw new Error(`CI is set but ${why}`);

describe(`the ticker in Chromium over the ${PROFILE} profile`, { skip: why || false }, () => {
  let netem, ticker, browser, addr, clientNs, work;
  const results = [];

  before(async () => {
    // Two builds: with `--example`, cargo builds no binary of the other package.
    for (const args of [
      ["build", "-p", "xtask"],
      ["build", "-p", "duplex-tokio", "--example", "ticker"],
    ]) {
      const build = spawnSync("cargo", args, { cwd: ROOT, stdio: "inherit" });
      assert.equal(build.status, 0, `cargo ${args.join(" ")}`);
    }
    // SIGINT makes netem delete its namespaces.
    netem = spawn(XTASK, ["netem", "run", "--profile", PROFILE], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const link = await firstMatch(
      netem,
      /client end (\S+) at \S+, server end (\S+) at (\S+)/,
      "`link up` from cargo xtask netem",
    );
    clientNs = link[1];
    ticker = spawn("ip", ["netns", "exec", link[2], TICKER, `${link[3]}:0`, "--rate", "10"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    addr = (await firstMatch(ticker, /^listening on (\S+)$/, "`listening on` from the ticker"))[1];
    work = mkdtempSync(path.join(tmpdir(), "duplex-ticker-netem-"));
    // Chromium started inside the client namespace; playwright talks to it over pipes.
    const wrapper = path.join(work, "chromium-in-netns");
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${clientNs} ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({ executablePath: wrapper, args: CHROMIUM_ARGS });
  });

  after(async () => {
    if (browser) await browser.close();
    await stop(ticker);
    await stop(netem, "SIGINT");
    if (work) rmSync(work, { recursive: true, force: true });
    if (results.length) {
      console.log(`\n${PROFILE}, ${SECONDS} s per transport, page and Rust client at once:\n`);
      console.log("| transport | page: updates | page p50 | page p99 | Rust: updates | Rust p50 | Rust p99 |");
      console.log("|---|---:|---:|---:|---:|---:|---:|");
      for (const r of results) {
        console.log(
          `| ${r.name} | ${r.page.length} | ${median(r.page).toFixed(1)} ms | ${percentile(r.page, 0.99).toFixed(1)} ms | ` +
            `${r.rust.delivered} | ${r.rust.latency_p50_ms.toFixed(1)} ms | ${r.rust.latency_p99_ms.toFixed(1)} ms |`,
        );
      }
    }
  });

  for (const [kind, name] of TRANSPORTS) {
    it(`${name}: the page's median latency agrees with the Rust client's`, async () => {
      const json = path.join(work, `${name}.json`);
      const rust = spawn(
        "ip",
        ["netns", "exec", clientNs, XTASK, "seed-compare", "--url", `http://${addr}`,
         "--clients", "1", "--duration", String(SECONDS), "--transports", name, "--json", json],
        { stdio: ["ignore", "ignore", "inherit"] },
      );
      const rustDone = new Promise((resolve) => rust.once("exit", resolve));
      const page = await browser.newPage();
      await page.goto(`http://${addr}/?t=${kind}`);
      await page.waitForTimeout(SECONDS * 1000);
      const state = await page.evaluate(() => ({
        latencies: session.allLatencies,
        missed: session.missed,
        duplicated: session.duplicated,
      }));
      await page.close();
      assert.equal(await rustDone, 0, "seed-compare failed");
      const report = JSON.parse(readFileSync(json, "utf8")).results[0];
      results.push({ name, page: state.latencies, rust: report });

      assert.equal(state.missed + state.duplicated, 0, "the page missed or repeated updates");
      assert.ok(state.latencies.length >= SECONDS * 10 * 0.6, `${state.latencies.length} updates in the page`);
      // Short polling's latency is mostly where in its interval an update falls, so its
      // two medians differ by the clients' phases: a wider margin.
      const page50 = median(state.latencies);
      const rust50 = report.latency_p50_ms;
      const margin = kind === "poll" ? 200 : Math.max(10, rust50 * 0.3);
      assert.ok(
        Math.abs(page50 - rust50) <= margin,
        `page median ${page50.toFixed(1)} ms, Rust ${rust50.toFixed(1)} ms (margin ${margin.toFixed(0)} ms)`,
      );
    });
  }
});
