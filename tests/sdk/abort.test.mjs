// (c) abortController.abort() in the middle of a long Bash tool call: the cage cgroup and every
// process in it are gone within 5 s, before the SDK's own SIGKILL (2 s + 5 s after the abort).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

test('abort mid tool call: cage and its processes gone within 5 s', { timeout: 60000 }, async (t) => {
  h.assertCageBuilt();
  const sb = h.sandbox(t, 'abort');
  const cgFile = sb.file('cgroup.txt');
  const api = await startStandIn({
    script: [{ bash: `echo "$CLAUDE_CAGE_CGROUP" > ${cgFile}; sleep 300`, timeout: 600000 }, { text: 'never reached' }],
  });
  t.after(() => api.close());
  const events = sb.file('events.jsonl');
  const policy = h.writePolicy(sb, `[events]\nfile = "${events}"\n`);
  const ac = new AbortController();
  const running = h.runQuery('Sleep for a while.', h.queryOptions(sb, api, { policy, abortController: ac }));

  const cg = await h.waitForFile(cgFile, { timeoutMs: 30000 });
  assert.ok(cg.startsWith(sb.cgroupParent + '/'), `not run in a cage: ${cg}`);
  const sleeping = await h.waitFor(() => h.cgroupPids(cg).some((p) => /^sleep 300/.test(h.cmdline(p))), { timeoutMs: 5000 });
  assert.ok(sleeping, `no "sleep 300" in ${cg}: ${h.describePids(h.cgroupPids(cg))}`);
  const inCage = h.cgroupPids(cg);

  const t0 = Date.now();
  ac.abort();
  const gone = await h.waitFor(() => !fs.existsSync(cg) && inCage.every((p) => !h.pidAlive(p)), { timeoutMs: 5000, intervalMs: 20 });
  const elapsed = Date.now() - t0;
  assert.ok(gone, `5 s after abort(): cgroup exists=${fs.existsSync(cg)}, alive: ${h.describePids(inCage.filter(h.pidAlive))}`);
  t.diagnostic(`cage gone ${elapsed} ms after abort()`);

  const r = await running;
  assert.ok(r.error, 'the aborted query did not raise');
  assert.match(`${r.error.name} ${r.error.message}`, /abort/i);
  const exit = h.readEvents(events).find((e) => e.event === 'exit');
  t.diagnostic(`exit event: ${JSON.stringify(exit)}`);
  // The SDK ends the child with SIGTERM (no stdin-eof-grace in this policy, so nothing else
  // can end the cage): reason `terminated`, and status 143 says the forwarded SIGTERM reached
  // Claude (killed by it, or exiting 128+15 on it); the cage's kill after term-grace would be
  // SIGKILL, 137. (The SDK stops reading stderr once aborted: the line is not checked here.)
  assert.equal(exit?.reason, 'terminated', `exit event: ${JSON.stringify(exit)}`);
  assert.equal(exit?.status, 143, `exit event: ${JSON.stringify(exit)}`);
  await h.assertNothingLeft(assert, sb);
});
