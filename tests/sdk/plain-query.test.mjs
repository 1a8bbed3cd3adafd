// (a) A plain query through the cage gives the same messages and final result as without it.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

const SCRIPT = [
  { bash: 'echo "cage=${CLAUDE_CAGE_CGROUP:-none}"; grep "^0::" /proc/self/cgroup' },
  { text: 'final answer: 42' },
];

async function run(t, label, caged) {
  const sb = h.sandbox(t, label);
  const api = await startStandIn({ script: SCRIPT });
  t.after(() => api.close());
  const events = sb.file('events.jsonl');
  const policy = caged ? h.writePolicy(sb, `[events]\nfile = "${events}"\n`) : null;
  const r = await h.runQuery('Run the command, then answer.', h.queryOptions(sb, api, { policy }));
  return { sb, api, r, events };
}

test('plain query: same message types and final result with and without the cage', { timeout: 90000 }, async (t) => {
  h.assertCageBuilt();
  const direct = await run(t, 'plain-direct', false);
  const caged = await run(t, 'plain-caged', true);

  for (const [label, { r }] of Object.entries({ direct, caged })) {
    assert.equal(r.error, null, `${label}: query failed: ${r.error?.message}\nstderr: ${r.stderr}`);
    const res = h.result(r.messages);
    assert.ok(res, `${label}: no result message`);
    assert.equal(res.subtype, 'success', `${label}: result subtype`);
    assert.equal(res.is_error, false, `${label}: result is_error`);
    assert.equal(res.result, 'final answer: 42', `${label}: result text`);
  }
  assert.deepEqual(h.shape(caged.r.messages), h.shape(direct.r.messages), 'message types differ');
  assert.deepEqual(h.shape(direct.r.messages), ['system/init', 'assistant', 'user', 'assistant', 'result/success']);
  assert.deepEqual(caged.api.requests.map((q) => `${q.method} ${q.path}`),
    direct.api.requests.map((q) => `${q.method} ${q.path}`), 'the CLI asked the API for different things');
  t.diagnostic(`requests to the stand-in API per query: ${direct.api.requests.map((q) => `${q.method} ${q.url}`).join(', ')}`);

  // Without the cage the tool sees no cage; with it, the Bash tool runs inside <mount>/<name>/<cage-id>.
  const [directOut] = h.toolResults(direct.r.messages);
  assert.match(directOut, /cage=none/);
  const [cagedOut] = h.toolResults(caged.r.messages);
  const cg = /cage=(\S+)/.exec(cagedOut)?.[1];
  assert.ok(cg && cg.startsWith(`${caged.sb.cgroupParent}/${caged.sb.name}-`),
    `CLAUDE_CAGE_CGROUP=${cg} is not <mount>/${caged.sb.name}/${caged.sb.name}-*: ${cagedOut}`);
  const rel = path.relative(h.cgroup2Mount(), cg);
  assert.match(cagedOut, new RegExp(`0::/${rel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(/|\\s|$)`),
    `the Bash tool's own cgroup is not inside the cage: ${cagedOut}`);

  // The events file tells the same story.
  const ev = fs.readFileSync(caged.events, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const start = ev.find((e) => e.event === 'start');
  const exit = ev.find((e) => e.event === 'exit');
  assert.ok(start && exit, `events: ${JSON.stringify(ev)}`);
  assert.equal(start.cgroup, cg);
  assert.equal(start.bot, caged.sb.name);
  assert.equal(exit.reason, 'exited');
  assert.equal(exit.status, 0);

  await h.assertNothingLeft(assert, direct.sb);
  await h.assertNothingLeft(assert, caged.sb);
});
