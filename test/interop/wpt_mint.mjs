// Mints a WIT (ES256 issuer) and a WPT with the independent `jose` implementation, for agentauth to verify.
// stdin: {"sub": "...", "aud": "...", "workloadAlg": "EdDSA" | "ES256", "accessToken"?: "...", "txnToken"?: "..."}
// stdout: {"issuerJwk": {... public, kid, alg}, "wit": "...", "wpt": "..."}
import { SignJWT, exportJWK, generateKeyPair, base64url } from 'jose';
import { createHash, randomBytes } from 'node:crypto';
import { text } from 'node:stream/consumers';

const hash = (s) => base64url.encode(createHash('sha256').update(s, 'ascii').digest());

const input = JSON.parse(await text(process.stdin));
const now = Math.floor(Date.now() / 1000);

const issuer = await generateKeyPair('ES256', { extractable: true });
const issuerJwk = { ...(await exportJWK(issuer.publicKey)), kid: 'node-issuer-1', alg: 'ES256' };

const workload = await generateKeyPair(input.workloadAlg, { extractable: true });
const cnfJwk = { ...(await exportJWK(workload.publicKey)), alg: input.workloadAlg };

const wit = await new SignJWT({ cnf: { jwk: cnfJwk } })
  .setProtectedHeader({ alg: 'ES256', typ: 'wit+jwt', kid: issuerJwk.kid })
  .setSubject(input.sub)
  .setIssuer('https://node-issuer.example')
  .setIssuedAt(now)
  .setExpirationTime(now + 3600)
  .setJti(base64url.encode(randomBytes(16)))
  .sign(issuer.privateKey);

const claims = { wth: hash(wit) };
if (input.accessToken) claims.ath = hash(input.accessToken);
if (input.txnToken) claims.tth = hash(input.txnToken);
const wpt = await new SignJWT(claims)
  .setProtectedHeader({ alg: input.workloadAlg, typ: 'wpt+jwt' })
  .setAudience(input.aud)
  .setExpirationTime(now + 60)
  .setJti(base64url.encode(randomBytes(16)))
  .sign(workload.privateKey);

process.stdout.write(JSON.stringify({ issuerJwk, wit, wpt }));
