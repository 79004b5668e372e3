// Test-only OpenID Provider for tokengate's integration tests.
//
// Runs the real `oidc-provider` package (panva) on 127.0.0.1 with an ephemeral
// port so Rust tests can obtain real access tokens via client_credentials
// (JWTs, or opaque tokens checked by RFC 7662 introspection and revocable by
// RFC 7009 revocation) and trigger a signing-key rotation. NOT for production
// use.
//
// Protocol with the parent process:
//   * stdout: exactly ONE line of JSON once listening, e.g.
//       {"issuer":"http://127.0.0.1:41234","port":41234}
//     Nothing else is ever written to stdout (all logging goes to stderr).
//   * The process exits when its stdin reaches EOF / is closed (the parent
//     died or dropped the pipe), and on SIGTERM / SIGINT.
//
// Environment:
//   TOKEN_TTL        access token lifetime in seconds (default 300)
//   PKJWT_JWKS_FILE  path to a public JWKS (JSON) for client `svc-pkjwt`
//                    (private_key_jwt, RS256 or ES256); client omitted if unset
//   TLS_CERT_FILE, TLS_KEY_FILE  PEM files: the same provider is also served
//                    over HTTPS on a second port, asking for (not requiring)
//                    a client certificate; the readiness line then carries
//                    "tls_port". Over it, certificate-bound tokens are bound to
//                    the certificate the TLS client presented.
//
// Resources (client_credentials `resource=`; default urn:orders), each token's
// `aud` is the resource; scopes granted are limited by the client's allow-list:
//   urn:orders   JWT (RS256) access tokens, scopes orders:read orders:write
//   urn:other    JWT (RS256) access tokens, scope  other:read
//   urn:opaque   OPAQUE access tokens,      scopes orders:read orders:write
//   urn:opaque-short  the same, living 2 seconds whatever TOKEN_TTL says
//
// Clients (the svc-* ones may use only the client_credentials grant):
//   svc-basic / basic-secret  client_secret_basic  orders:read orders:write other:read
//   svc-post  / post-secret   client_secret_post   orders:read orders:write other:read
//   svc-readonly / ro-secret  client_secret_basic  orders:read
//   svc-pkjwt                 private_key_jwt      (only with PKJWT_JWKS_FILE)
//   svc-dpop / dpop-secret    client_secret_basic  orders:read orders:write other:read;
//     its token requests must carry a DPoP proof (RFC 9449; ES256, EdDSA,
//     PS256 or RS256, no server nonce needed), and its tokens are DPoP-bound:
//     token_type DPoP, cnf.jkt the proof key's thumbprint
//   svc-dpop-nonce / dpop-nonce-secret  the same, but its proofs must carry
//     the server's nonce: one without gets 400 use_dpop_nonce and a
//     DPoP-Nonce header (RFC 9449 §8)
//   svc-mtls / mtls-secret    client_secret_basic  orders:read orders:write other:read;
//     certificate-bound tokens (RFC 8705): its tokens carry cnf["x5t#S256"]
//     of the client certificate of the HTTPS connection (see TLS_CERT_FILE)
//     or, over plain HTTP, of the one passed as a TLS-terminating proxy would,
//     URL-encoded PEM in `x-ssl-client-cert` (TEST ONLY: the header is not
//     authenticated)
//   rs-introspector / introspect-secret  client_secret_basic (or _post), no
//     grant types: the resource server's credentials for introspection.
//
// Token introspection (RFC 7662) and revocation (RFC 7009) are enabled, at
// POST /token/introspection and POST /token/revocation (form-encoded, client
// authentication required; discovery advertises both). Any authenticated
// client, e.g. rs-introspector, may introspect any opaque token, e.g.
//   {"active":true,"client_id":"svc-basic","exp":..,"iat":..,"iss":"<issuer>",
//    "aud":"urn:opaque","scope":"orders:read orders:write","token_type":"Bearer"}
// Unknown, expired and revoked tokens answer 200 {"active":false}; JWTs are
// refused (400 unsupported_token_type) by both endpoints. Only the client a
// token was issued to may revoke it (another client: 400 invalid_request).
//
// Admin endpoints (same server, handled before oidc-provider sees them):
//   GET  /__health   -> 200 {"ok":true,"kid":"<current signing kid>"}
//   POST /__rotate   -> 200 {"kid":"key-2"}; from then on tokens are signed
//                       with key-2 and the JWKS publishes ONLY key-2 (so
//                       key-1 tokens stop verifying once a verifier refetches).
//                       `POST /__rotate?keep_old=1` publishes [key-2, key-1]
//                       instead (key-2 first, still signing with key-2).
//                       Rotating again is idempotent (stays on key-2).
//
// oidc-provider cannot change its keystore at runtime, so rotation builds a
// fresh Provider instance with the new JWKS and swaps which instance's
// callback() the single http server dispatches to. Clients are static config
// and survive; all instances share one in-memory adapter (SHARED_ADAPTER), so
// opaque tokens (and their revocation) and client-assertion jti replay
// detection also survive.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

// oidc-provider prints NOTICEs via console.info, which goes to stdout. Route
// every console channel to stderr BEFORE the library is loaded so stdout only
// ever carries the single readiness line.
const toStderr = (...args) => { process.stderr.write(`${args.map(String).join(' ')}\n`); };
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;

const { default: Provider, errors } = await import('oidc-provider');
// Deep import (the pinned package has no `exports` map): oidc-provider 9.x
// gives every Provider instance its OWN in-memory store, so without one shared
// adapter all stored state (opaque access tokens, client-assertion jtis) would
// be lost on /__rotate. 15 = oidc-provider's default clockTolerance, which is
// what it would pass to its own memory adapter.
const { createMemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js');
const SHARED_ADAPTER = createMemoryAdapter(15);

const log = (...args) => toStderr('[interop-provider]', ...args);

function exit(code, why) {
  log(`exiting: ${why}`);
  process.exit(code);
}

// Exit when the parent goes away (stdin EOF/close) or on signals.
process.stdin.on('end', () => exit(0, 'stdin ended'));
process.stdin.on('close', () => exit(0, 'stdin closed'));
process.stdin.on('error', () => exit(0, 'stdin error'));
process.stdin.resume();
process.on('SIGTERM', () => exit(0, 'SIGTERM'));
process.on('SIGINT', () => exit(0, 'SIGINT'));

const TOKEN_TTL = (() => {
  const raw = process.env.TOKEN_TTL;
  if (raw === undefined || raw === '') return 300;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) {
    log(`invalid TOKEN_TTL=${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
})();

// ---- signing keys ---------------------------------------------------------

function rsaSigningJwk(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

const KEYS = { 'key-1': rsaSigningJwk('key-1'), 'key-2': rsaSigningJwk('key-2') };

// ---- resource servers and clients -----------------------------------------

const RESOURCES = {
  'urn:orders': 'orders:read orders:write',
  'urn:other': 'other:read',
  'urn:opaque': 'orders:read orders:write',
  'urn:opaque-short': 'orders:read orders:write',
};
// Resources whose access tokens are opaque reference tokens (checked via
// introspection) instead of JWTs.
const OPAQUE_RESOURCES = new Set(['urn:opaque', 'urn:opaque-short']);
// urn:opaque-short's tokens live this long whatever TOKEN_TTL says (a test
// watches one expire).
const SHORT_TTL = 2;
const DEFAULT_RESOURCE = 'urn:orders';

const ALL_SCOPES = 'orders:read orders:write other:read';
const clients = [
  {
    client_id: 'svc-basic',
    client_secret: 'basic-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    scope: ALL_SCOPES,
  },
  {
    client_id: 'svc-post',
    client_secret: 'post-secret',
    token_endpoint_auth_method: 'client_secret_post',
    scope: ALL_SCOPES,
  },
  {
    client_id: 'svc-readonly',
    client_secret: 'ro-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'orders:read',
  },
  {
    client_id: 'svc-mtls',
    client_secret: 'mtls-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    scope: ALL_SCOPES,
    tls_client_certificate_bound_access_tokens: true,
  },
  {
    client_id: 'svc-dpop',
    client_secret: 'dpop-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    scope: ALL_SCOPES,
    dpop_bound_access_tokens: true,
  },
  {
    client_id: 'svc-dpop-nonce',
    client_secret: 'dpop-nonce-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    scope: ALL_SCOPES,
    dpop_bound_access_tokens: true,
  },
];
// Clients whose DPoP proofs must carry the server's nonce.
const NONCE_CLIENTS = new Set(['svc-dpop-nonce']);
const DPOP_NONCE_SECRET = crypto.randomBytes(32);

if (process.env.PKJWT_JWKS_FILE) {
  const jwks = JSON.parse(fs.readFileSync(process.env.PKJWT_JWKS_FILE, 'utf8'));
  clients.push({
    client_id: 'svc-pkjwt',
    token_endpoint_auth_method: 'private_key_jwt',
    // alg restricted globally via enabledJWA.clientAuthSigningAlgValues (RS256, ES256)
    jwks,
    scope: ALL_SCOPES,
  });
}

for (const c of clients) {
  Object.assign(c, { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] });
}

// The resource server's own credentials for the introspection endpoint. It
// cannot obtain tokens itself (no grant types, no scopes).
clients.push({
  client_id: 'rs-introspector',
  client_secret: 'introspect-secret',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: [],
  response_types: [],
  redirect_uris: [],
});

const COOKIE_KEYS = [crypto.randomBytes(32).toString('base64url')];

function buildProvider(issuer, signingKeys) {
  const provider = new Provider(issuer, {
    adapter: SHARED_ADAPTER,
    clients,
    jwks: { keys: signingKeys },
    cookies: { keys: COOKIE_KEYS },
    // Resource-server scopes must be declared here, otherwise client `scope`
    // metadata using them is rejected as invalid_client_metadata. Declaring
    // them also makes oidc-provider enforce each client's `scope` allow-list:
    // requesting a scope the client may not have -> 400 invalid_scope.
    scopes: ['openid', 'offline_access', ...ALL_SCOPES.split(' ')],
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'ES256'],
      dPoPSigningAlgValues: ['ES256', 'EdDSA', 'PS256', 'RS256'],
    },
    features: {
      devInteractions: { enabled: false },
      // DPoP (RFC 9449): a token request with a proof gets a token bound to
      // its key; server nonces for NONCE_CLIENTS (the client is authenticated
      // before its proof is checked).
      dPoP: {
        enabled: true,
        nonceSecret: DPOP_NONCE_SECRET,
        requireNonce: (ctx) => NONCE_CLIENTS.has(ctx.oidc?.client?.clientId),
      },
      // Certificate-bound tokens (RFC 8705) for clients that ask for them;
      // the certificate as a TLS-terminating proxy passes it (test only).
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        getCertificate(ctx) {
          const peer = ctx.req.socket.getPeerCertificate?.();
          if (peer?.raw) return new crypto.X509Certificate(peer.raw);
          const raw = ctx.get('x-ssl-client-cert');
          if (!raw) return undefined;
          try {
            return new crypto.X509Certificate(decodeURIComponent(raw));
          } catch {
            return undefined;
          }
        },
      },
      // Explicit versions of oidc-provider's default policies (which behave
      // the same but log a NOTICE on every call):
      // * introspection: ANY authenticated confidential client (e.g.
      //   rs-introspector) gets the full answer for any token, including
      //   tokens issued to other clients for a resource server audience.
      // * revocation: only the client the token was issued to may revoke it;
      //   any other client gets 400 invalid_request.
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => (
          client.clientAuthMethod !== 'none' || token.clientId === client.clientId
        ),
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => {
          if (token.clientId === client.clientId) return true;
          if (client.clientAuthMethod === 'none') return false;
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        },
      },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => DEFAULT_RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource, client) => {
          const allowed = RESOURCES[resource];
          if (allowed === undefined) throw new errors.InvalidTarget();
          // Belt and braces: never grant more than the client's allow-list
          // (oidc-provider already rejects such requests with invalid_scope
          // because these scopes are declared in `scopes` above).
          const clientScopes = new Set((client?.scope ?? '').split(' '));
          const scope = allowed.split(' ').filter((s) => clientScopes.has(s)).join(' ');
          if (OPAQUE_RESOURCES.has(resource)) {
            return {
              scope,
              audience: resource,
              accessTokenTTL: resource === 'urn:opaque-short' ? SHORT_TTL : TOKEN_TTL,
              accessTokenFormat: 'opaque',
            };
          }
          return {
            scope,
            audience: resource,
            accessTokenTTL: TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // A resource server's own accessTokenTTL (urn:opaque-short's) wins.
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? TOKEN_TTL,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? TOKEN_TTL,
    },
  });
  provider.on('server_error', (_ctx, err) => log('server_error', err?.stack ?? err));
  provider.on('grant.error', (_ctx, err) => log('grant.error', err?.message, err?.error_description ?? ''));
  return provider;
}

// ---- http server -----------------------------------------------------------

let current = null; // { kid, handler }

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/__health') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'method_not_allowed' });
    return sendJson(res, current ? 200 : 503, { ok: !!current, kid: current?.kid ?? null });
  }
  if (url.pathname === '/__rotate') {
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed' });
    req.resume(); // ignore any body
    const keepOld = ['1', 'true'].includes(url.searchParams.get('keep_old') ?? '');
    const keys = keepOld ? [KEYS['key-2'], KEYS['key-1']] : [KEYS['key-2']];
    const provider = buildProvider(current.issuer, keys);
    current = { issuer: current.issuer, kid: 'key-2', handler: provider.callback() };
    log(`rotated: signing with key-2, jwks=[${keys.map((k) => k.kid).join(',')}]`);
    return sendJson(res, 200, { kid: 'key-2' });
  }
  if (!current) return sendJson(res, 503, { error: 'starting' });
  return current.handler(req, res);
}

const server = http.createServer(handle);
// Any client certificate is taken (its key proven by the handshake), as a
// TLS-terminating proxy without a client CA would.
const tlsServer = process.env.TLS_CERT_FILE
  ? https.createServer({
    cert: fs.readFileSync(process.env.TLS_CERT_FILE),
    key: fs.readFileSync(process.env.TLS_KEY_FILE),
    requestCert: true,
    rejectUnauthorized: false,
  }, handle)
  : null;

for (const s of [server, tlsServer].filter(Boolean)) {
  s.on('error', (err) => {
    log('server error', err?.stack ?? err);
    process.exit(1);
  });
}

const listening = (s) => new Promise((resolve) => { s.listen(0, '127.0.0.1', resolve); });
await Promise.all([server, tlsServer].filter(Boolean).map(listening));
{
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = buildProvider(issuer, [KEYS['key-1']]);
  current = { issuer, kid: 'key-1', handler: provider.callback() };
  const tls_port = tlsServer?.address().port;
  process.stdout.write(`${JSON.stringify({ issuer, port, tls_port })}\n`);
  log(`listening on ${issuer}${tlsServer ? ` and https port ${tls_port}` : ''} (token ttl ${TOKEN_TTL}s, clients: ${clients.map((c) => c.client_id).join(', ')})`);
}
