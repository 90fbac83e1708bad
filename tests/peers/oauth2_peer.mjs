// A real OAuth2 token server for the tests: oauth2-mock-server on a free loopback port.
// Usage: node oauth2_peer.mjs COUNT_FILE ALLOWED_SECRETS_FILE
// Prints "PORT <n>" once listening. Each issued token appends a line to COUNT_FILE. A token
// request whose client_secret is not a line of ALLOWED_SECRETS_FILE gets 401 invalid_client; while
// ALLOWED_SECRETS_FILE.revoked exists, refresh_token grants get 400 invalid_grant. A refresh
// token is good once, as with providers that rotate them: used again it gets 400 invalid_grant.
import { OAuth2Server } from 'oauth2-mock-server';
import fs from 'node:fs';

const [, , countFile, allowedFile] = process.argv;
const server = new OAuth2Server();
const spent = new Set();
await server.issuer.keys.generate('RS256');

server.service.on('beforeResponse', (response, req) => {
  if (!req.url.startsWith('/token')) return;
  const allowed = fs.readFileSync(allowedFile, 'utf8').split('\n').filter(Boolean);
  const secret = req.body && req.body.client_secret;
  if (req.body && req.body.grant_type === 'refresh_token' && fs.existsSync(allowedFile + '.revoked')) {
    response.statusCode = 400;
    response.body = { error: 'invalid_grant' };
    return;
  }
  if (!allowed.includes(secret)) {
    response.statusCode = 401;
    response.body = { error: 'invalid_client' };
    return;
  }
  if (req.body.grant_type === 'refresh_token') {
    if (spent.has(req.body.refresh_token)) {
      response.statusCode = 400;
      response.body = { error: 'invalid_grant' };
      return;
    }
    spent.add(req.body.refresh_token);
  }
  fs.appendFileSync(countFile, 'token\n');
});

await server.start(0, '127.0.0.1');
console.log(`PORT ${server.address().port}`);
process.on('SIGTERM', async () => {
  await server.stop();
  process.exit(0);
});
