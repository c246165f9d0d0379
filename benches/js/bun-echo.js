// A Bun echo server for `cargo xtask load --compare`: `bun bun-echo.js [ADDR]`
// (default 127.0.0.1:0) prints `listening on ADDR` as its first line, then sends
// every text and binary message back. Bun.serve's WebSocket server is uWebSockets.
// No compression; no idle timeout; messages up to 16 MiB.
const [host, port] = (process.argv[2] ?? "127.0.0.1:0").split(":");

const server = Bun.serve({
  hostname: host,
  port: Number(port),
  fetch(req, server) {
    if (server.upgrade(req)) return undefined;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 16 * 1024 * 1024,
    idleTimeout: 0,
    message(ws, message) {
      ws.send(message);
    },
  },
});

console.log(`listening on ${server.hostname}:${server.port}`);
