// (b) A Bash tool call leaves a setsid'd background process behind. With the cage it is gone
// once the query is over; without the cage (negative control) it survives.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

function leakScript(sb) {
  const pidFile = sb.file('daemon.pid');
  const cgFile = sb.file('cgroup.txt');
  // setsid -f: a new session and process group, so neither the CLI's process-group kill nor
  // its wait for the command reaches it; `exec sleep` keeps the recorded pid the sleeper's.
  const cmd = `echo "\${CLAUDE_CAGE_CGROUP:-none}" > ${cgFile}; `
    + `setsid -f sh -c 'echo $$ > ${pidFile}; exec sleep 1000' </dev/null >/dev/null 2>&1; echo spawned`;
  return { pidFile, cgFile, script: [{ bash: cmd }, { text: 'daemon started' }] };
}

test('setsid background process: killed with the cage when the query ends', { timeout: 60000 }, async (t) => {
  h.assertCageBuilt();
  const sb = h.sandbox(t, 'setsid-caged');
  const { pidFile, cgFile, script } = leakScript(sb);
  const api = await startStandIn({ script });
  t.after(() => api.close());
  const policy = h.writePolicy(sb, '');
  const r = await h.runQuery('Start the daemon.', h.queryOptions(sb, api, { policy }));
  assert.equal(r.error, null, `query failed: ${r.error?.message}`);
  assert.equal(h.result(r.messages)?.result, 'daemon started');
  const pid = Number(await h.waitForFile(pidFile, { timeoutMs: 5000 }));
  const cg = fs.readFileSync(cgFile, 'utf8').trim();
  assert.ok(cg.startsWith(sb.cgroupParent + '/'), `not run in a cage: ${cg}`);

  const gone = await h.waitFor(() => !h.pidAlive(pid) && !fs.existsSync(cg), { timeoutMs: 10000 });
  assert.ok(gone, `10 s after the query: daemon ${pid} alive=${h.pidAlive(pid)} (${h.cmdline(pid)}), cgroup ${cg} exists=${fs.existsSync(cg)}`);
  await h.assertNothingLeft(assert, sb);
});

test('setsid background process: survives without the cage (negative control)', { timeout: 60000 }, async (t) => {
  const sb = h.sandbox(t, 'setsid-direct');
  const { pidFile, script } = leakScript(sb);
  const api = await startStandIn({ script });
  t.after(() => api.close());
  const r = await h.runQuery('Start the daemon.', h.queryOptions(sb, api));
  assert.equal(r.error, null, `query failed: ${r.error?.message}`);
  assert.equal(h.result(r.messages)?.result, 'daemon started');
  const pid = Number(await h.waitForFile(pidFile, { timeoutMs: 5000 }));

  // Wait for the CLI itself to be gone, then give the leak a moment to be cleaned up by anyone.
  const cliGone = await h.waitFor(() => h.taggedPids(sb.tag).every((p) => h.exeOf(p) !== h.NATIVE_CLAUDE), { timeoutMs: 15000 });
  assert.ok(cliGone, `the CLI did not exit: ${h.describePids(h.taggedPids(sb.tag))}`);
  await sleep(1000);
  const survived = h.pidAlive(pid);
  const cmd = h.cmdline(pid);
  try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  assert.ok(survived, `daemon ${pid} did not survive without the cage: the control proves nothing`);
  assert.match(cmd, /^sleep 1000$/);
  await h.assertNothingLeft(assert, sb);
});
