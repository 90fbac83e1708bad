// Signs inbound webhooks with the vendors' own npm libraries, as the vendors would send them.
// Reads JSON from stdin: one request {scheme, secret, body, url?, id?, timestamp?, event?}, or an
// array of them (one Node start for many signatures).
//   scheme: github | stripe | twilio | twilio-sharedkey | standard | svix
//   body: the raw body (for twilio a form: its parameters are what Twilio signs, with the url);
//     or bodyBase64 for bytes that are not UTF-8 (github only: @octokit/webhooks-methods takes
//     non-empty strings, so such bodies get the same HMAC from node:crypto)
//   timestamp: unix seconds (default now), or offset: seconds from now; id: the delivery id
//     (github, standard, svix). With an offset, signing waits for the start of the next second, so
//     that a request sent at once arrives within the second its offset counts from.
// Prints the header fields to send: one JSON object, or an array of them. Exit code 2 on unusable input.
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { readStdinJson } from './stdin_json.mjs';

const require = createRequire(import.meta.url);
const Stripe = require('stripe');
const twilio = require('twilio');
const { Webhook: StandardWebhook } = require('standardwebhooks');
const { Webhook: SvixWebhook } = require('svix');

const m = await readStdinJson(console.error);
const signers = {
  github: async (m, id) => ({
    'X-GitHub-Delivery': id,
    'X-GitHub-Event': m.event ?? 'pull_request',
    'X-Hub-Signature-256': typeof m.body === 'string' && m.body.length > 0
      ? await githubSign(m.secret, m.body)
      : `sha256=${createHmac('sha256', m.secret).update(m.body).digest('hex')}`,
  }),
  stripe: async (m, id, timestamp) => ({
    'Stripe-Signature': Stripe('sk_test_unused').webhooks.generateTestHeaderString({
      payload: m.body, secret: m.secret, timestamp,
    }),
  }),
  twilio: async (m) => {
    const params = Object.fromEntries(new URLSearchParams(m.body));
    const signature = twilio.getExpectedTwilioSignature(m.secret, m.url, params);
    // Twilio's own check of what it signed, so a test never blames the host for a bad fixture.
    if (!twilio.validateRequest(m.secret, signature, m.url, params)) throw new Error('twilio did not verify its own signature');
    return { 'X-Twilio-Signature': signature, 'Content-Type': 'application/x-www-form-urlencoded' };
  },
  // A webhook signed with a SharedKey: HMAC-SHA256, which the settings header names.
  'twilio-sharedkey': async (m) => {
    const params = Object.fromEntries(new URLSearchParams(m.body));
    const signature = twilio.getExpectedTwilioSignature(m.secret, m.url, params, 'HMAC_SHA256');
    if (!twilio.validateRequest(m.secret, signature, m.url, params, 'HMAC_SHA256')) throw new Error('twilio did not verify its own signature');
    return {
      'X-Twilio-Signature': signature,
      'X-Twilio-Webhooks-Signature-Settings': 'key=webhooks_sharedkey_test,algorithm=HMAC_SHA256',
      'Content-Type': 'application/x-www-form-urlencoded',
    };
  },
  standard: async (m, id, timestamp) => ({
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': new StandardWebhook(m.secret).sign(id, new Date(timestamp * 1000), m.body),
  }),
  svix: async (m, id, timestamp) => ({
    'svix-id': id,
    'svix-timestamp': String(timestamp),
    'svix-signature': new SvixWebhook(m.secret).sign(id, new Date(timestamp * 1000), m.body),
  }),
};

const signOne = async (m) => {
  const signer = signers[m.scheme];
  if (!signer) {
    console.error(`unknown scheme '${m.scheme}': one of ${Object.keys(signers).join(', ')}`);
    process.exit(2);
  }
  if (m.bodyBase64 !== undefined) m.body = Buffer.from(m.bodyBase64, 'base64');
  const timestamp = m.timestamp ?? Math.floor(Date.now() / 1000) + (m.offset ?? 0);
  return signer(m, m.id ?? `msg_${timestamp}`, timestamp);
};

if ((Array.isArray(m) ? m : [m]).some((r) => r.offset !== undefined))
  await new Promise((resolve) => setTimeout(resolve, 1005 - (Date.now() % 1000)));
const out = Array.isArray(m) ? await Promise.all(m.map(signOne)) : await signOne(m);
console.log(JSON.stringify(out));
