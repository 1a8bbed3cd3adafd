// (f) When the cage kills the child (here: max-runtime), the error the TypeScript SDK raises
// carries claude-cage's one-line reason.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

test('cage kill (max-runtime): the SDK error contains the claude-cage: line', { timeout: 60000 }, async (t) => {
  h.assertCageBuilt();
  const sb = h.sandbox(t, 'killmsg');
  const cgFile = sb.file('cgroup.txt');
  const events = sb.file('events.jsonl');
  const api = await startStandIn({
    script: [{ bash: `echo "$CLAUDE_CAGE_CGROUP" > ${cgFile}; sleep 300`, timeout: 600000 }, { text: 'never reached' }],
  });
  t.after(() => api.close());
  const policy = h.writePolicy(sb, `[lifetime]\nmax-runtime = "3s"\n\n[events]\nfile = "${events}"\n`);
  // No stderr callback: exactly what a bot that only catches the error gets.
  const { stderr: _none, ...options } = h.queryOptions(sb, api, { policy });
  const r = await h.runQuery('Sleep for a while.', options);
  t.diagnostic(`query ended after ${r.ms} ms: ${r.error?.message}`);

  assert.ok(r.error, `no error raised; messages: ${h.shape(r.messages)}`);
  const cageLine = new RegExp(`claude-cage: ${sb.name}-\\d+-\\d+: `);
  assert.match(r.error.message, /^Claude Code process exited with code 124\. stderr: /);
  assert.match(r.error.message, cageLine);
  assert.ok(r.ms < 20000, `took ${r.ms} ms`);
  assert.equal(h.result(r.messages), null, 'a result arrived although the child was killed');

  const cg = fs.readFileSync(cgFile, 'utf8').trim();
  assert.ok(!fs.existsSync(cg), `cgroup ${cg} still exists`);
  const exit = fs.readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.event === 'exit');
  assert.equal(exit?.reason, 'timeout', `exit event: ${JSON.stringify(exit)}`);
  assert.equal(exit.status, 124);
  await h.assertNothingLeft(assert, sb);
});
