// An HTTPS server on a free loopback port with the given key and certificate (self-signed in the
// tests). Usage: node tls_peer.mjs KEY_FILE CERT_FILE. Prints "PORT <n>".
// GET /redirect?location=URL answers 302 to URL; GET /session?delay=MS answers, after MS, "resumed"
// when the connection's TLS handshake resumed an earlier session and "full" otherwise; anything
// else answers 200 "secure".
import https from 'node:https';
import fs from 'node:fs';

const [, , keyFile, certFile] = process.argv;
const server = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }, (req, res) => {
  const url = new URL(req.url, 'https://peer.invalid');
  if (url.pathname === '/redirect') {
    res.writeHead(302, { location: url.searchParams.get('location') || '' }).end();
    return;
  }
  if (url.pathname === '/session') {
    const answer = req.socket.isSessionReused() ? 'resumed' : 'full';
    setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(answer), Number(url.searchParams.get('delay') || 0));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' }).end('secure');
});
server.listen(0, '127.0.0.1', () => console.log(`PORT ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
