// Signs a request or a response with the independent http-message-signatures implementation, with the covered
// components and parameters of the WIMSE profile, computing Content-Digest with node's own SHA-256.
// stdin: {"request": {"method", "url", "headers"}, "response"?: {"status", "headers"}, "jwk": {private JWK},
//         "alg": "ed25519" | "ecdsa-p256-sha256" | ..., "label": "wimse", "fields": ["@method", ...],
//         "params": ["created", ...], "paramValues": {"created": <unix>, "expires": <unix>, "nonce": "...", ...},
//         "body"?: "<base64 of the target message's content>"}
// stdout: {"headers": {<name>: [<values>], ...}} (the target message's headers, signed) or {"error": "..."};
// exit status 0 either way.
import pkg from 'http-message-signatures';
import { serializeDictionary } from 'structured-headers';
import { createHash, createPrivateKey } from 'node:crypto';
import { text } from 'node:stream/consumers';

const { httpbis, createSigner } = pkg;

async function main(input) {
  const key = createPrivateKey({ key: input.jwk, format: 'jwk' });
  const message = input.response ?? input.request;
  const req = input.response ? input.request : undefined;
  if (input.body !== undefined) {
    const digest = createHash('sha256').update(Buffer.from(input.body, 'base64')).digest();
    const ab = digest.buffer.slice(digest.byteOffset, digest.byteOffset + digest.byteLength);
    message.headers['Content-Digest'] = serializeDictionary(new Map([['sha-256', [ab, new Map()]]]));
  }
  const paramValues = { ...input.paramValues };
  for (const k of ['created', 'expires']) {
    if (paramValues[k] !== undefined) paramValues[k] = new Date(paramValues[k] * 1000);
  }
  const signed = await httpbis.signMessage({
    key: createSigner(key, input.alg),
    name: input.label,
    fields: input.fields,
    params: input.params,
    paramValues,
  }, message, req);
  const headers = Object.fromEntries(
    Object.entries(signed.headers).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]));
  return { headers };
}

try {
  process.stdout.write(JSON.stringify(await main(JSON.parse(await text(process.stdin)))));
} catch (e) {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }));
}
