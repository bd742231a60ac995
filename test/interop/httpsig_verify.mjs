// Verifies an RFC 9421 signature made by agentauth with the independent http-message-signatures implementation,
// and checks Content-Digest with node's own SHA-256.
// stdin: {"request": {"method", "url", "headers"}, "response"?: {"status", "headers"}, "jwk": {public JWK},
//         "alg": "ed25519" | "ecdsa-p256-sha256" | ..., "label": "wimse", "requiredFields": ["@method", ...],
//         "body"?: "<base64 of the target message's content>"}
// stdout: {"ok": bool, "base": "<signature base node rebuilt>", "digestOk": bool | null, "error"?: "..."};
// exit status 0 either way.
import pkg from 'http-message-signatures';
import { parseDictionary, serializeItem, serializeList } from 'structured-headers';
import { createHash, createPublicKey } from 'node:crypto';
import { text } from 'node:stream/consumers';

const { httpbis, createVerifier } = pkg;

function header(headers, name) {
  const entry = Object.entries(headers).find(([k]) => k.toLowerCase() === name);
  if (!entry) return undefined;
  return Array.isArray(entry[1]) ? entry[1].join(', ') : entry[1];
}

// signatureBase rebuilds the base for one label the way verifyMessage does internally.
function signatureBase(input, message, req) {
  const members = parseDictionary(header(message.headers, 'signature-input'));
  const member = members.get(input.label);
  if (!member) throw new Error(`no Signature-Input member ${input.label}`);
  const fields = member[0].map((item) => serializeItem(item));
  const base = httpbis.createSignatureBase({ fields }, message, req);
  base.push(['"@signature-params"', [serializeList([member])]]);
  return httpbis.formatSignatureBase(base);
}

function digestOk(message, body) {
  const value = header(message.headers, 'content-digest');
  if (value === undefined) return null;
  const dict = parseDictionary(value);
  const sha256 = dict.get('sha-256');
  if (!sha256) return false;
  const want = createHash('sha256').update(body).digest();
  return Buffer.compare(Buffer.from(sha256[0]), want) === 0;
}

async function main(input) {
  const key = createPublicKey({ key: input.jwk, format: 'jwk' });
  const message = input.response ?? input.request;
  const req = input.response ? input.request : undefined;
  const body = Buffer.from(input.body ?? '', 'base64');
  const out = { base: signatureBase(input, message, req), digestOk: digestOk(message, body) };
  const verify = createVerifier(key, input.alg);
  const ok = await httpbis.verifyMessage({
    keyLookup: async () => ({ verify, algs: [input.alg] }),
    requiredFields: input.requiredFields ?? [],
    requiredParams: ['created', 'expires', 'nonce', 'tag'],
    tolerance: 30,
  }, message, req);
  return { ...out, ok: ok === true };
}

try {
  process.stdout.write(JSON.stringify(await main(JSON.parse(await text(process.stdin)))));
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.message || e) }));
}
