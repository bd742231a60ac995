// Verifies a WIT + WPT pair made by agentauth with the independent `jose` implementation.
// stdin: {"issuerJwk": {...}, "wit": "...", "wpt": "...", "aud": "...", "accessToken"?: "...", "txnToken"?: "..."}
// stdout: {"ok": true, "sub": "...", "jti": "..."} or {"ok": false, "error": "..."}; exit status 0 either way.
import { importJWK, jwtVerify, base64url } from 'jose';
import { createHash } from 'node:crypto';
import { text } from 'node:stream/consumers';

const hash = (s) => base64url.encode(createHash('sha256').update(s, 'ascii').digest());

async function verify(input) {
  const issuerKey = await importJWK(input.issuerJwk, input.issuerJwk.alg);
  const wit = await jwtVerify(input.wit, issuerKey, {
    typ: 'wit+jwt',
    algorithms: ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'],
    requiredClaims: ['sub', 'exp', 'cnf'],
  });
  const jwk = wit.payload.cnf && wit.payload.cnf.jwk;
  if (!jwk || !jwk.alg) throw new Error('WIT has no cnf.jwk with alg');
  if ('d' in jwk) throw new Error('cnf.jwk carries a private key');

  const workloadKey = await importJWK(jwk, jwk.alg);
  const wpt = await jwtVerify(input.wpt, workloadKey, {
    typ: 'wpt+jwt',
    algorithms: [jwk.alg],
    audience: input.aud,
    requiredClaims: ['aud', 'exp', 'jti', 'wth'],
  });
  if (wpt.protectedHeader.alg !== jwk.alg) throw new Error('WPT alg differs from cnf.jwk.alg');
  if (wpt.payload.wth !== hash(input.wit)) throw new Error('wth does not match the WIT');
  const bindings = [['ath', input.accessToken], ['tth', input.txnToken]];
  for (const [claim, token] of bindings) {
    if (token && wpt.payload[claim] !== hash(token)) throw new Error(`${claim} does not match`);
    if (!token && claim in wpt.payload) throw new Error(`${claim} present without its token`);
  }
  return { ok: true, sub: wit.payload.sub, jti: wpt.payload.jti };
}

try {
  process.stdout.write(JSON.stringify(await verify(JSON.parse(await text(process.stdin)))));
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: `${err.code || err.name}: ${err.message}` }));
}
