// A real OpenID provider for phigate's authentication tests: the
// `oidc-provider` package with a login page that has an MFA step, first-party
// clients that skip consent, JWT access tokens carrying amr/acr/auth_time and
// role claims, refresh tokens, and RP-initiated logout.
//
//   node server.js --port 4000 --keys keys.json [--redirect-uri URI]... [--access-ttl 300]
//
// Keys: `keys.json` holds private JWKs (RS256 and ES256). If the file does not
// exist it is generated. Rotating keys = restarting the provider with another
// file on the same port: the issuer stays the same, the kids change.
//
// Prints `idp listening <issuer>` on stdout when ready.

import { createServer } from 'node:http';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import * as jose from 'jose';
import Provider from 'oidc-provider';

function args() {
  const out = { port: 4000, keys: 'keys.json', redirectUris: [], postLogoutUris: [], accessTtl: 300, tamperNonce: false };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 1) {
    const v = a[i + 1];
    switch (a[i]) {
      case '--port': out.port = Number(v); i += 1; break;
      case '--keys': out.keys = v; i += 1; break;
      case '--redirect-uri': out.redirectUris.push(v); i += 1; break;
      case '--post-logout-uri': out.postLogoutUris.push(v); i += 1; break;
      case '--access-ttl': out.accessTtl = Number(v); i += 1; break;
      case '--tamper-nonce': out.tamperNonce = true; break;
      default: throw new Error(`unknown argument ${a[i]}`);
    }
  }
  return out;
}

// Also writes `<path>.pem.json` ({kid: {alg, pem}}) so tests can mint tokens
// the provider's own keys sign (edge cases a real login cannot produce).
async function loadKeys(path) {
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8'));
  const keys = [];
  const pems = {};
  for (const alg of ['RS256', 'ES256']) {
    const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
    const jwk = await jose.exportJWK(privateKey);
    const kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`;
    keys.push({ ...jwk, alg, use: 'sig', kid });
    pems[kid] = { alg, pem: await jose.exportPKCS8(privateKey) };
  }
  writeFileSync(path, JSON.stringify({ keys }, null, 2));
  writeFileSync(`${path}.pem.json`, JSON.stringify(pems, null, 2));
  return { keys };
}

// Synthetic test users (the demo's personas use the same shapes).
const ACCOUNTS = {
  alice: { name: 'Alice Carter', email: 'alice@hospital.test', roles: ['care_manager'], org: 'org-0001', npi: '1000000001', care_teams: ['ct-0001', 'ct-0002'], fhirUser: 'Practitioner/prac-0002' },
  bob: { name: 'Bob Nguyen', email: 'bob@hospital.test', roles: ['physician'], org: 'org-0001', npi: '1000000002', care_teams: ['ct-0001'], fhirUser: 'Practitioner/prac-0003' },
  carol: { name: 'Carol Diaz', email: 'carol@hospital.test', roles: ['billing'], org: 'org-0001' },
  sam: { name: 'Sam Okafor', email: 'sam@vendor.test', roles: ['support_engineer'], org: 'org-vendor' },
  rita: { name: 'Rita Okonkwo', email: 'rita@hospital.test', roles: ['researcher'], org: 'org-0001' },
  pat: { name: 'Pat Synthetic', email: 'pat@example.test', roles: ['patient'], patient: 'pat-0001', fhirUser: 'Patient/pat-0001' },
};

const RESOURCE = 'urn:phigate:api';

async function main() {
  const opts = args();
  const jwks = await loadKeys(opts.keys);
  const issuer = `http://127.0.0.1:${opts.port}`;

  const configuration = {
    clients: [
      {
        client_id: 'phigate-web',
        client_secret: 'phigate-web-test-secret',
        redirect_uris: opts.redirectUris.length ? opts.redirectUris : ['http://127.0.0.1/callback'],
        post_logout_redirect_uris: opts.postLogoutUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        // A public client for scripted API token fetches in tests.
        client_id: 'test-cli',
        token_endpoint_auth_method: 'none',
        redirect_uris: ['http://127.0.0.1/cli-callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      },
    ],
    jwks,
    findAccount: async (ctx, id) => {
      const a = ACCOUNTS[id];
      if (!a) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email_verified: true, ...a };
        },
      };
    },
    claims: {
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      phigate: ['roles', 'org', 'npi', 'care_teams', 'fhirUser', 'patient'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'phigate', 'fhir'],
    acrValues: ['urn:phigate:pwd', 'urn:phigate:mfa'],
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          // Confirm without a click: the tests drive logout end to end.
          // "Yes, sign me out" of the provider too (the button's value).
          ctx.body = `<!DOCTYPE html><html><body>${form}<script>
            const f = document.forms[0];
            const yes = document.createElement('input');
            yes.type = 'hidden'; yes.name = 'logout'; yes.value = 'yes';
            f.appendChild(yes); f.submit();
          </script></body></html>`;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          if (resource !== RESOURCE) throw new Error('unknown resource');
          return {
            scope: 'fhir',
            audience: 'phigate',
            accessTokenTTL: opts.accessTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: process.env.IDP_ACCESS_ALG || 'RS256' } },
          };
        },
      },
    },
    // First-party clients: no consent screen.
    loadExistingGrant: async (ctx) => {
      const { Grant } = ctx.oidc.provider;
      const existing = ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (existing) {
        const grant = await Grant.find(existing);
        if (grant) return grant;
      }
      const grant = new Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid offline_access email profile phigate');
      grant.addResourceScope(RESOURCE, 'fhir');
      await grant.save();
      return grant;
    },
    issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token'),
    extraTokenClaims: async (ctx, token) => {
      const account = ACCOUNTS[token.accountId];
      const origin = ctx.oidc.entities.AuthorizationCode || ctx.oidc.entities.RefreshToken;
      if (!account || !origin) return undefined;
      return {
        amr: origin.amr,
        acr: origin.acr,
        auth_time: origin.authTime,
        roles: account.roles,
        email: account.email,
        name: account.name,
        realm_access: { roles: account.roles },
        ...(account.fhirUser ? { fhirUser: account.fhirUser } : {}),
        ...(account.patient ? { patient: account.patient } : {}),
        ...(account.org ? { org: account.org } : {}),
        ...(account.npi ? { npi: account.npi } : {}),
        ...(account.care_teams ? { care_teams: account.care_teams } : {}),
      };
    },
    pkce: { required: () => true },
    conformIdTokenClaims: false,
    ttl: {
      AccessToken: opts.accessTtl,
      IdToken: opts.accessTtl,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 3600,
      AuthorizationCode: 60,
    },
    cookies: { keys: ['test-idp-cookie-key-not-secret'] },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>idp error</h1><pre id="error">${out.error}: ${out.error_description || ''}</pre></body></html>`;
    },
  };

  const provider = new Provider(issuer, configuration);
  const handle = provider.callback();

  const page = (uid, details) => `<!DOCTYPE html>
<html><head><title>Test IdP sign-in</title></head><body>
<h1>Sign in</h1>
<form method="post" action="/interaction/${uid}/login" id="login">
  <label>User <input name="login" id="login-user" autofocus></label>
  <label>Password <input name="password" id="login-password" type="password"></label>
  <label><input type="checkbox" name="otp" id="login-otp" value="1"> one-time code (MFA)</label>
  <input type="hidden" name="auth_age" id="login-auth-age" value="0">
  <button type="submit" id="login-submit">Sign in</button>
</form>
<p id="prompt">${details.prompt.name}</p>
</body></html>`;

  const readForm = (req) => new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (c) => { body += c; if (body.length > 1e5) req.destroy(); });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
    req.on('error', reject);
  });

  let jwksRequests = 0;
  // --tamper-nonce: ID tokens from the token endpoint are re-signed, with the
  // provider's own key, carrying a different nonce. A relying party must
  // refuse them even though the signature is valid.
  const tamper = async (body) => {
    const out = JSON.parse(body);
    if (!out.id_token) return body;
    const [h] = out.id_token.split('.');
    const header = JSON.parse(Buffer.from(h, 'base64url').toString());
    const payload = jose.decodeJwt(out.id_token);
    const jwk = jwks.keys.find((k) => k.kid === header.kid);
    const key = await jose.importJWK(jwk, header.alg);
    out.id_token = await new jose.SignJWT({ ...payload, nonce: 'not-the-nonce-you-sent' })
      .setProtectedHeader(header)
      .sign(key);
    return JSON.stringify(out);
  };

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, issuer);
      if (opts.tamperNonce && url.pathname === '/token') {
        const chunks = [];
        const { write, end } = res;
        res.write = (c) => { chunks.push(Buffer.from(c)); return true; };
        res.end = (c) => {
          if (c) chunks.push(Buffer.from(c));
          tamper(Buffer.concat(chunks).toString()).then((body) => {
            res.removeHeader('content-length');
            res.write = write; res.end = end;
            res.end(body);
          });
        };
        return handle(req, res);
      }
      if (url.pathname === '/jwks') jwksRequests += 1;
      if (url.pathname === '/__stats') {
        res.setHeader('Content-Type', 'application/json');
        return res.end(JSON.stringify({ jwks_requests: jwksRequests }));
      }
      const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
      if (!m) return handle(req, res);
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'consent') {
        // First-party clients: grant what was asked without a screen.
        const { Grant } = provider;
        const grant = details.grantId
          ? await Grant.find(details.grantId)
          : new Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        const missing = details.prompt.details;
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
        const grantId = await grant.save();
        return await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      }
      if (req.method === 'GET') {
        res.setHeader('Content-Type', 'text/html');
        return res.end(page(details.uid, details));
      }
      const form = await readForm(req);
      if (!ACCOUNTS[form.login] || form.password !== 'test') {
        res.statusCode = 401;
        res.setHeader('Content-Type', 'text/html');
        return res.end(`<!DOCTYPE html><html><body><p id="error">bad credentials</p>${page(details.uid, details)}</body></html>`);
      }
      const mfa = form.otp === '1';
      const age = Number(form.auth_age || 0);
      const result = {
        login: {
          accountId: form.login,
          amr: mfa ? ['pwd', 'otp', 'mfa'] : ['pwd'],
          acr: mfa ? 'urn:phigate:mfa' : 'urn:phigate:pwd',
          ts: Math.floor(Date.now() / 1000) - age,
          remember: true,
        },
      };
      return await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    } catch (err) {
      res.statusCode = 500;
      res.end(String(err && err.message));
    }
  });
  server.listen(opts.port, '127.0.0.1', () => {
    process.stdout.write(`idp listening ${issuer}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
