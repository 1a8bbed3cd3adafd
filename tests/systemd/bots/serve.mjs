// The guest side of the quick start's bots: one stand-in Messages API (stand-in-api.mjs, the SDK
// suite's) per bot, each with its script, and a webhook listener that keeps every POST.
//
//   node serve.mjs DIR NAME=SCRIPT-JSON...
//
// Once all listen on 127.0.0.1, DIR/ports gets one "<name> <port>" line per stand-in and one
// "hook <port>" line. Each request to a stand-in is appended to DIR/<name>.requests as
// "<method> <url> tool_results=<n>"; each POST to the listener to DIR/hook.jsonl as
// {"event": <X-Claude-Cage-Event>, "body": <the posted line>}. Runs until SIGTERM.
import fs from 'node:fs';
import http from 'node:http';
import { startStandIn } from './stand-in-api.mjs';

const [dir, ...specs] = process.argv.slice(2);
if (!dir || specs.length === 0) {
  console.error('usage: serve.mjs DIR NAME=SCRIPT-JSON...');
  process.exit(2);
}
const apis = [];
for (const spec of specs) {
  const i = spec.indexOf('=');
  const name = spec.slice(0, i);
  const api = await startStandIn({ script: JSON.parse(spec.slice(i + 1)), log: false });
  apis.push({ name, api, logged: 0 });
}
const hook = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    if (req.method === 'POST') {
      const line = JSON.stringify({ event: req.headers['x-claude-cage-event'] ?? null, body: body.trim() });
      fs.appendFileSync(`${dir}/hook.jsonl`, `${line}\n`);
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
  });
});
await new Promise((resolve) => hook.listen(0, '127.0.0.1', resolve));

const flush = () => {
  for (const a of apis) {
    for (const q of a.api.requests.slice(a.logged)) {
      const results = (q.body?.messages ?? []).flatMap((m) => (Array.isArray(m.content) ? m.content : []))
        .filter((b) => b?.type === 'tool_result').length;
      fs.appendFileSync(`${dir}/${a.name}.requests`, `${q.method} ${q.url} tool_results=${results}\n`);
    }
    a.logged = a.api.requests.length;
  }
};
const timer = setInterval(flush, 200);
const ports = apis.map(({ name, api }) => `${name} ${api.port}\n`).join('') + `hook ${hook.address().port}\n`;
fs.writeFileSync(`${dir}/ports.tmp`, ports);
fs.renameSync(`${dir}/ports.tmp`, `${dir}/ports`);

process.on('SIGTERM', async () => {
  clearInterval(timer);
  flush();
  hook.close();
  await Promise.all(apis.map(({ api }) => api.close()));
  process.exit(0);
});
