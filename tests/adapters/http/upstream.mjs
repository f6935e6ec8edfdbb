// An upstream API behind nginx, for tests/adapters/http/test_nginx.py: it routes as
// permissively as upstreams do, so that any spelling of a path an upstream could read as
// another route is one this server reads so.
//
// The path is read with the WHATWG URL parser (`new URL`, which reads '\' as '/', drops
// tabs and newlines, resolves %2e segments and takes '#' for a fragment); then, as
// servlet containers do, ';' parameters are stripped from each segment; each segment is
// percent-decoded, '\' read as '/' again, dot segments resolved again, repeated and
// trailing slashes ignored and case ignored (as Express routes by default).
//
// The answer says which route served the request, with its method, the path as parsed,
// and every request header (identity headers included).
//
//   node upstream.mjs PORT

import http from "node:http";

const ROUTES = ["/v1/things", "/v1/invoices", "/v1/events", "/v1/status"];

function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function route(pathname) {
  const segments = pathname.split("/").map((s) => decode(s.split(";")[0]));
  const out = [];
  for (const s of segments.join("/").replaceAll("\\", "/").split("/")) {
    if (s === "" || s === ".") continue;
    if (s === "..") {
      out.pop();
      continue;
    }
    out.push(s.toLowerCase());
  }
  const path = "/" + out.join("/");
  return ROUTES.find((r) => path === r || path.startsWith(r + "/")) ?? null;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://upstream.test");
  const body = JSON.stringify({
    route: route(url.pathname),
    path: url.pathname,
    method: req.method,
    headers: req.headers,
  });
  res.writeHead(200, { "content-type": "application/json" });
  res.end(body);
});

server.listen(Number(process.argv[2]), "127.0.0.1", () => {
  console.log("listening");
});
