// node-oidc-provider issuing client_credentials access tokens as ES256 at+jwt (RFC 9068),
// the grant bench/grants.py measures apiward's against. One process, in-memory storage.
//
//   node bench/oidc/server.mjs PORT CLIENT_ID CLIENT_SECRET
import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:http";
import Provider from "oidc-provider";

const [port, clientId, clientSecret] = process.argv.slice(2);
const audience = "https://api.example";
const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "bench", alg: "ES256", use: "sig" };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_post",
      id_token_signed_response_alg: "ES256",
      scope: "keys:read",
    },
  ],
  jwks: { keys: [jwk] },
  scopes: ["keys:read"],
  cookies: { keys: ["bench-cookie-key-bench-cookie-key"] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: "keys:read",
        audience,
        accessTokenTTL: 900,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "ES256" } },
      }),
    },
  },
});

createServer(provider.callback()).listen(Number(port), "127.0.0.1");
