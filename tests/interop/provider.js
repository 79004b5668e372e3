// Test-only OpenID Provider for tokengate's integration tests.
//
// Runs the real `oidc-provider` package (panva) on 127.0.0.1 with an ephemeral
// port so Rust tests can obtain real JWT access tokens via client_credentials
// and trigger a signing-key rotation. NOT for production use.
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
// and survive; the default in-memory adapter storage is module-global, so
// e.g. client-assertion jti replay detection also survives.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

// oidc-provider prints NOTICEs via console.info, which goes to stdout. Route
// every console channel to stderr BEFORE the library is loaded so stdout only
// ever carries the single readiness line.
const toStderr = (...args) => { process.stderr.write(`${args.map(String).join(' ')}\n`); };
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;

const { default: Provider, errors } = await import('oidc-provider');

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
};
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
];

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

const COOKIE_KEYS = [crypto.randomBytes(32).toString('base64url')];

function buildProvider(issuer, signingKeys) {
  const provider = new Provider(issuer, {
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
    },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: false },
      revocation: { enabled: false },
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
    ttl: {
      AccessToken: () => TOKEN_TTL,
      ClientCredentials: () => TOKEN_TTL,
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

const server = http.createServer((req, res) => {
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
});

server.on('error', (err) => {
  log('server error', err?.stack ?? err);
  process.exit(1);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = buildProvider(issuer, [KEYS['key-1']]);
  current = { issuer, kid: 'key-1', handler: provider.callback() };
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
  log(`listening on ${issuer} (token ttl ${TOKEN_TTL}s, clients: ${clients.map((c) => c.client_id).join(', ')})`);
});
