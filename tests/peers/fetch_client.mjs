// Node's own fetch as a client of the host. Usage: node fetch_client.mjs URL BEARER_KEY BODY_BYTES
// POSTs a JSON-typed body of BODY_BYTES bytes and prints one JSON line: {status, body} for an
// answer, {error} (with its cause's code, e.g. EPIPE or ECONNRESET) when fetch failed.
const [, , url, key, bytes] = process.argv;
try {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: ' '.repeat(Number(bytes)),
  });
  console.log(JSON.stringify({ status: res.status, body: await res.text() }));
} catch (e) {
  console.log(JSON.stringify({ error: `${e.message} ${e.cause?.code ?? e.cause?.message ?? ''}` }));
}
