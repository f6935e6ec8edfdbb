// A standard OAuth client against a running apiward, as a Node.js integration would use
// it: RFC 8414 discovery, client credentials (client_secret_post, the library's default),
// RFC 7662 introspection, RFC 7009 revocation, and the access token verified with the
// published JWKS. Prints one JSON object of what it saw; tests/interop/test_node_oauth.py
// runs it. Usage: node oauth_client.mjs ISSUER CLIENT_ID CLIENT_SECRET SCOPE
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [issuer, clientId, clientSecret, scope] = process.argv.slice(2);

const config = await client.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  algorithm: 'oauth2',
  execute: [client.allowInsecureRequests], // the test server speaks plain HTTP on loopback
});
const metadata = config.serverMetadata();
const tokens = await client.clientCredentialsGrant(config, { scope });
const introspected = await client.tokenIntrospection(config, tokens.access_token);
const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
const { payload } = await jwtVerify(tokens.access_token, jwks, {
  issuer: metadata.issuer,
  audience: metadata.issuer,
});
await client.tokenRevocation(config, tokens.access_token);
const afterRevocation = await client.tokenIntrospection(config, tokens.access_token);

process.stdout.write(JSON.stringify({
  issuer: metadata.issuer,
  token_endpoint: metadata.token_endpoint,
  token_type: tokens.token_type,
  expires_in: tokens.expires_in,
  scope: tokens.scope,
  introspected: { active: introspected.active, client_id: introspected.client_id, scope: introspected.scope },
  verified: { sub: payload.sub, scope: payload.scope, iss: payload.iss },
  after_revocation: { active: afterRevocation.active },
}));
