// A Bun fan-out server for `cargo xtask load --fanout`: `bun bun-fanout.js [ADDR]`
// (default 127.0.0.1:0) prints `listening on ADDR` as its first line. Every connection
// is subscribed to one topic when it opens; every message a connection sends is
// published to it with `server.publish` (uWebSockets' pub/sub, the sender included).
// permessage-deflate is accepted when offered (uWebSockets' shared compressor).
const [host, port] = (process.argv[2] ?? "127.0.0.1:0").split(":");
const TOPIC = "all";

const server = Bun.serve({
  hostname: host,
  port: Number(port),
  fetch(req, server) {
    if (server.upgrade(req)) return undefined;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    perMessageDeflate: true,
    maxPayloadLength: 16 * 1024 * 1024,
    idleTimeout: 0,
    backpressureLimit: 64 * 1024 * 1024,
    open(ws) {
      ws.subscribe(TOPIC);
    },
    message(ws, message) {
      server.publish(TOPIC, message);
    },
  },
});

console.log(`listening on ${server.hostname}:${server.port}`);
