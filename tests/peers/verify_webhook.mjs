// Verifies one signed webhook with the official receivers' libraries, as a customer would.
// Reads JSON from stdin: {secret, id, timestamp, signature, body} for a whsec_ secret (checked with
// the standardwebhooks and svix npm libraries), or {publicKey, ...} for a whpk_ Ed25519 key (v1a,
// checked with Node's crypto, since neither library implements v1a).
// Prints one JSON line with each verifier's verdict. Exit code: 0 every verifier accepted,
// 1 every verifier refused, 2 they disagreed or the input was unusable.
import { createPublicKey, verify } from 'node:crypto';
import { createRequire } from 'node:module';
import { Webhook as SvixWebhook } from 'svix';
import { readStdinJson } from './stdin_json.mjs';

const require = createRequire(import.meta.url);
const { Webhook: StandardWebhook } = require('standardwebhooks');

const m = await readStdinJson((message) => console.log(JSON.stringify({ error: message })));

const verdicts = {};
const attempt = (name, fn) => {
  try {
    fn();
    verdicts[name] = true;
  } catch (e) {
    verdicts[name] = false;
    verdicts[`${name}Error`] = e.message;
  }
};

if (m.secret) {
  attempt('standardwebhooks', () =>
    new StandardWebhook(m.secret).verify(m.body, {
      'webhook-id': m.id, 'webhook-timestamp': m.timestamp, 'webhook-signature': m.signature,
    }));
  attempt('svix', () =>
    new SvixWebhook(m.secret).verify(m.body, {
      'svix-id': m.id, 'svix-timestamp': m.timestamp, 'svix-signature': m.signature,
    }));
}
if (m.publicKey) {
  attempt('ed25519', () => {
    const x = Buffer.from(m.publicKey.replace(/^whpk_/, ''), 'base64').toString('base64url');
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    const content = Buffer.from(`${m.id}.${m.timestamp}.${m.body}`);
    const ok = m.signature.split(' ').some((entry) => {
      const [version, sig] = entry.split(',');
      return version === 'v1a' && verify(null, content, key, Buffer.from(sig, 'base64'));
    });
    if (!ok) throw new Error('no v1a signature matches');
  });
}

console.log(JSON.stringify(verdicts));
const results = Object.entries(verdicts).filter(([k]) => !k.endsWith('Error')).map(([, v]) => v);
process.exit(results.length && results.every((v) => v) ? 0 : results.length && results.every((v) => !v) ? 1 : 2);
