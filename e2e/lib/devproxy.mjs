// For working on web/ without rebuilding the binary: serves web/ files from disk and passes
// every other request (API, SSE, downloads) through to a running auravita. Used by the tests
// when E2E_WEB_DIR is set; CI never sets it (it tests the assets embedded in the binary).

import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize, extname } from 'node:path';

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

export function startProxy(webDir, upstreamPort, port) {
  const server = http.createServer(async (req, res) => {
    const path = req.url.split('?')[0];
    const file = path === '/' ? 'index.html' : normalize(path).replace(/^\/+/, '');
    if (req.method === 'GET' && TYPES[extname(file)] && !file.startsWith('..')) {
      try {
        const body = await readFile(join(webDir, file));
        res.writeHead(200, { 'content-type': TYPES[extname(file)], 'content-security-policy': CSP, 'cache-control': 'no-cache' });
        return res.end(body);
      } catch {
        // not a web/ file: pass it on
      }
    }
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok(server)));
}
