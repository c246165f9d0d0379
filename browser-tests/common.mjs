// What the browser tests share: where the chat-web example and Chromium are, the
// Chromium flags, and starting and stopping the example.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || "target");
const SERVER = path.join(TARGET, "debug", "examples", "chat-web");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/**
 * Starts the chat server on `addr` (with extra `args`, such as `--tls`) and resolves
 * with the child and its `listening on` address.
 */
export function startServer(addr = "127.0.0.1:0", args = []) {
  if (!existsSync(SERVER)) {
    throw new Error(`${SERVER} is missing: cargo build -p duplex-hub --features tokio,redis --example chat-web`);
  }
  const child = spawn(SERVER, [addr, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no `listening on` line within 30 s")), 30_000);
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`chat-web exited with ${code} before listening`)));
    lines.once("line", (line) => {
      clearTimeout(timer);
      const match = /^listening on (\S+)$/.exec(line);
      if (!match) return reject(new Error(`unexpected first line: ${line}`));
      child.removeAllListeners("exit");
      resolve({ child, addr: match[1] });
    });
  });
}

export function stopServer(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}
