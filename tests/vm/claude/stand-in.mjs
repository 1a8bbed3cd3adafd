// The host side of the VM's Claude Code boot: one stand-in Messages API (tests/sdk/lib/stand-in-api.mjs)
// per scenario, each with the script the scenario gives in its "# vmtest-api: <JSON array>" line
// (the steps of startStandIn: {"bash": "..."} answers with a Bash tool_use, {"text": "..."} ends).
//
//   node tests/vm/claude/stand-in.mjs PORTS SCENARIO.sh...
//
// Once every stand-in listens (on 127.0.0.1, which QEMU user networking shows to the guest as
// 10.0.2.2), PORTS gets one "<scenario name> <port>" line each. Every request is logged on
// stderr. Runs until SIGTERM or SIGINT.
import fs from 'node:fs';
import path from 'node:path';
import { startStandIn } from '../../sdk/lib/stand-in-api.mjs';

const [portsFile, ...scenarios] = process.argv.slice(2);
if (!portsFile || scenarios.length === 0) {
  console.error('usage: stand-in.mjs PORTS SCENARIO.sh...');
  process.exit(2);
}
const scripts = {};
for (const file of scenarios) {
  const name = path.basename(file, '.sh');
  const line = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('# vmtest-api:'));
  scripts[name] = line ? JSON.parse(line.slice('# vmtest-api:'.length)) : [{ text: 'done' }];
}
const servers = [];
for (const [name, script] of Object.entries(scripts)) {
  const api = await startStandIn({ script, log: false });
  servers.push({ name, api });
}
// Log after the fact too: one line per request, in order, for each scenario.
const logged = new Map(servers.map(({ name }) => [name, 0]));
const flush = () => {
  for (const { name, api } of servers) {
    for (const q of api.requests.slice(logged.get(name))) {
      const tools = Array.isArray(q.body?.tools) ? ` tools=${q.body.tools.length}` : '';
      const results = (q.body?.messages ?? []).flatMap((m) => (Array.isArray(m.content) ? m.content : []))
        .filter((b) => b?.type === 'tool_result').length;
      console.error(`stand-in ${name}: ${q.method} ${q.url}${tools}${q.body?.messages ? ` tool_results=${results}` : ''}`);
    }
    logged.set(name, api.requests.length);
  }
};
const timer = setInterval(flush, 200);
fs.writeFileSync(`${portsFile}.tmp`, servers.map(({ name, api }) => `${name} ${api.port}\n`).join(''));
fs.renameSync(`${portsFile}.tmp`, portsFile);

const stop = async () => {
  clearInterval(timer);
  flush();
  await Promise.all(servers.map(({ api }) => api.close()));
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
