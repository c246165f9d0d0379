// A Bun echo server for `cargo xtask load --compare`: `bun bun-echo.js [ADDR]`
// (default 127.0.0.1:0) prints `listening on ADDR` as its first line, then sends
// every text and binary message back. Bun.serve's WebSocket server is uWebSockets.
// No idle timeout; messages up to 16 MiB.
//
// DUPLEX_LOAD_TLS=DIR: TLS with DIR/cert.pem and DIR/key.pem (Bun's own TLS), for
// `--compare --tls`. DUPLEX_LOAD_DEFLATE=shared|dedicated: permessage-deflate with
// that compressor (and decompressor) when the client offers it, for
// `--compare --deflate`; without it, no compression.
const [host, port] = (process.argv[2] ?? "127.0.0.1:0").split(":");
const tlsDir = process.env.DUPLEX_LOAD_TLS;
const deflate = process.env.DUPLEX_LOAD_DEFLATE;
const compress = Boolean(deflate);

const server = Bun.serve({
  hostname: host,
  port: Number(port),
  tls: tlsDir
    ? { cert: Bun.file(`${tlsDir}/cert.pem`), key: Bun.file(`${tlsDir}/key.pem`) }
    : undefined,
  fetch(req, server) {
    if (server.upgrade(req)) return undefined;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    perMessageDeflate: deflate ? { compress: deflate, decompress: deflate } : false,
    maxPayloadLength: 16 * 1024 * 1024,
    idleTimeout: 0,
    message(ws, message) {
      // Bun compresses a message only when asked to (the second argument).
      ws.send(message, compress);
    },
  },
});

console.log(`listening on ${server.hostname}:${server.port}`);
