// node benches/node/sessions.js   (npm install --prefix benches/node first)
// The sessions example (examples/sessions.rs) on Node's cluster module, for benches/app.rs:
// the same routes, headers and Redis commands. Env: PORT (8000), WORKERS (CPUs),
// REDIS_URL (redis://127.0.0.1:6379).
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const crypto = require('node:crypto');
const os = require('node:os');

const port = Number(process.env.PORT || 8000);
const workers = Number(process.env.WORKERS || os.availableParallelism());
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const Redis = require('ioredis');
  const redis = new Redis(redisUrl, {
    connectTimeout: 500,
    commandTimeout: 1000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
  });
  redis.on('error', () => {});
  const worker = String(cluster.worker.id);

  const reply = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'X-Herd-Worker': worker, 'Content-Type': 'text/plain', ...headers });
    res.end(body);
  };
  const unavailable = (res, e) =>
    reply(res, 503, `503 session store unavailable: redis: ${e.message}\n`, { 'Retry-After': '1' });
  const sidOf = (req) => {
    const m = /(?:^|;\s*)sid=([0-9a-f]{32})(?:;|$)/.exec(req.headers.cookie || '');
    return m && m[1];
  };

  http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, '', { Allow: 'GET, HEAD' });
    switch (url.pathname) {
      case '/':
        return reply(res, 200, 'Hello from node\n');
      case '/login': {
        const user = url.searchParams.get('user') || '';
        if (!user || user.length > 256) return reply(res, 400, 'give ?user=NAME (1 to 256 bytes)\n');
        const sid = crypto.randomBytes(16).toString('hex');
        return redis.set(`session:${sid}`, user, 'EX', 3600).then(
          () => reply(res, 200, `logged in as ${user}\n`, { 'Set-Cookie': `sid=${sid}; HttpOnly; Path=/` }),
          (e) => unavailable(res, e));
      }
      case '/me': {
        const sid = sidOf(req);
        if (!sid) return reply(res, 401, 'no session: GET /login?user=NAME first\n');
        return redis.get(`session:${sid}`).then(
          (user) => user === null
            ? reply(res, 401, 'no session: it expired or never existed\n')
            : reply(res, 200, `${user}\n`),
          (e) => unavailable(res, e));
      }
      case '/slow': {
        const ms = Math.min(Number(url.searchParams.get('ms')) || 50, 10000);
        return setTimeout(() => reply(res, 200, `waited ${ms} ms\n`), ms);
      }
      default:
        return reply(res, 404, '');
    }
  }).listen(port);
}
