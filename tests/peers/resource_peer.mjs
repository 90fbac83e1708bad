// A protected API on a free loopback port. Usage: node resource_peer.mjs REVOKED_FILE
// Prints "PORT <n>". Answers 401 when the bearer token is missing or listed in REVOKED_FILE,
// else 200 {"ok":true}. A line "*" in REVOKED_FILE refuses every token.
import http from 'node:http';
import fs from 'node:fs';

const [, , revokedFile] = process.argv;
const server = http.createServer((req, res) => {
  const auth = req.headers['authorization'] || '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  const revoked = fs.existsSync(revokedFile) ? fs.readFileSync(revokedFile, 'utf8').split('\n') : [];
  if (!token || revoked.includes(token) || revoked.includes('*')) {
    res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
});
server.listen(0, '127.0.0.1', () => console.log(`PORT ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
