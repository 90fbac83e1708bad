// An IMDS-style managed-identity token endpoint on a free loopback port.
// Usage: node imds_peer.mjs COUNT_FILE   Prints "PORT <n>". Each token served appends a line
// "<resource> <client_id or ->" to COUNT_FILE. Requests without "Metadata: true" get 400.
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';

const [, , countFile] = process.argv;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname !== '/metadata/identity/oauth2/token' || req.method !== 'GET') {
    res.writeHead(404).end();
    return;
  }
  if (req.headers['metadata'] !== 'true') {
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_request' }));
    return;
  }
  const resource = url.searchParams.get('resource');
  fs.appendFileSync(countFile, `${resource} ${url.searchParams.get('client_id') ?? '-'}\n`);
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
    access_token: 'imds-' + crypto.randomBytes(16).toString('hex'),
    expires_in: '3599',
    token_type: 'Bearer',
    resource,
  }));
});
server.listen(0, '127.0.0.1', () => console.log(`PORT ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
