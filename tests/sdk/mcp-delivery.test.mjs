// mcpServersDelivery with claude-cage as the executable. Unset (default 'argv'), the SDK puts
// the MCP servers, env included, on the command line: claude-cage's own argv, Claude's argv and
// the "start" event of the events file all carry it, and the SDK warns (a custom executable).
// With 'initialize' they travel over stdin and appear in none of those.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import crypto from 'node:crypto';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

const warnings = [];
process.on('warning', (w) => warnings.push(w));

async function run(t, label, delivery) {
  const sb = h.sandbox(t, label);
  const api = await startStandIn({ script: [{ text: 'ok' }] });
  t.after(() => api.close());
  const secret = `sekrit-${crypto.randomBytes(6).toString('hex')}`;
  const events = sb.file('events.jsonl');
  const policy = h.writePolicy(sb, `[events]\nfile = "${events}"\n`);
  const options = h.queryOptions(sb, api, { policy });
  delete options.mcpServersDelivery;
  if (delivery) options.mcpServersDelivery = delivery;
  // A stdio server that exits at once: it fails to connect, which is fine; only its config matters.
  options.mcpServers = { probe: { type: 'stdio', command: 'true', args: [], env: { PROBE_TOKEN: secret } } };
  const r = await h.runQuery('hi', options);
  assert.equal(r.error, null, `${label}: ${r.error?.message}`);
  assert.equal(h.result(r.messages)?.result, 'ok');
  const init = r.messages.find((m) => m.type === 'system' && m.subtype === 'init');
  assert.deepEqual(init.mcp_servers.map((s) => s.name), ['probe'], `${label}: the CLI did not get the server`);
  const start = h.readEvents(events).find((e) => e.event === 'start');
  assert.ok(start, `${label}: no start event`);
  await h.assertNothingLeft(assert, sb);
  return { secret, startArgv: JSON.stringify(start.argv), eventsText: fs.readFileSync(events, 'utf8') };
}

test('mcpServersDelivery unset: servers (and their env) on the command line, DeprecationWarning', { timeout: 60000 }, async (t) => {
  h.assertCageBuilt();
  const { secret, startArgv } = await run(t, 'mcp-argv', undefined);
  assert.ok(startArgv.includes('--mcp-config') && startArgv.includes(secret),
    `expected --mcp-config with the server env in the start event's argv: ${startArgv}`);
  const w = warnings.find((x) => x.code === 'CLAUDE_SDK_MCP_SERVERS_ARGV_DEPRECATED');
  assert.ok(w, `no CLAUDE_SDK_MCP_SERVERS_ARGV_DEPRECATED warning: ${warnings.map((x) => x.code)}`);
  assert.equal(w.name, 'DeprecationWarning');
});

test('mcpServersDelivery "initialize": servers over stdin, nothing on the command line', { timeout: 60000 }, async (t) => {
  h.assertCageBuilt();
  const { secret, startArgv, eventsText } = await run(t, 'mcp-init', 'initialize');
  assert.ok(!startArgv.includes('--mcp-config'), `--mcp-config on the command line: ${startArgv}`);
  assert.ok(!eventsText.includes(secret), 'the server env reached the events file');
});
