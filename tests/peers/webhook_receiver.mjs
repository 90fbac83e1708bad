// A webhook receiver on loopback that verifies every delivery with the official standardwebhooks
// library, as a customer's endpoint would.
// Usage: node webhook_receiver.mjs SECRETS_DIR
//   A request to /NAME/... is verified with the secret in SECRETS_DIR/NAME (read at each request,
//   so the test may write it after subscribing). /fail/... answers 500, /gone/... 410, the rest 204.
//   GET /_received answers what arrived: [{path, id, verified, error, tamperedRejected, body}].
// Prints `PORT <n>` once listening.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';

const secrets = process.argv[2];
const received = [];

function check(secret, body, headers) {
  try {
    new Webhook(secret).verify(body, headers);
    return null;
  } catch (e) {
    return String(e && e.message ? e.message : e);
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    if (req.method === 'GET' && req.url === '/_received') {
      const text = JSON.stringify(received);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    const name = req.url.split('/')[1] || '';
    let error = null;
    let tamperedRejected = false;
    try {
      const secret = fs.readFileSync(path.join(secrets, path.basename(name)), 'utf8').trim();
      error = check(secret, body, req.headers);
      // One byte changed must not verify.
      const tampered = body.length > 0 ? body.slice(0, -1) + (body.at(-1) === 'x' ? 'y' : 'x') : 'x';
      tamperedRejected = check(secret, tampered, req.headers) !== null;
    } catch (e) {
      error = 'no secret for ' + name + ': ' + e.message;
    }
    received.push({ path: req.url, id: req.headers['webhook-id'] ?? null, verified: error === null, error,
                    tamperedRejected, body });
    res.writeHead(name === 'fail' ? 500 : name === 'gone' ? 410 : 204);
    res.end();
  });
});
server.listen(0, '127.0.0.1', () => console.log(`PORT ${server.address().port}`));
