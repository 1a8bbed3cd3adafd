// (d) The bot process itself is SIGKILLed mid-query: claude-cage notices its parent died and
// the cage goes shortly after.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

test('bot SIGKILLed mid-query: the cage is gone shortly after', { timeout: 60000 }, async (t) => {
  h.assertCageBuilt();
  const sb = h.sandbox(t, 'botkill');
  const cgFile = sb.file('cgroup.txt');
  const api = await startStandIn({
    script: [{ bash: `echo "$CLAUDE_CAGE_CGROUP" > ${cgFile}; sleep 300`, timeout: 600000 }, { text: 'never reached' }],
  });
  t.after(() => api.close());
  const events = sb.file('events.jsonl');
  const policy = h.writePolicy(sb, `[events]\nfile = "${events}"\n`);
  const { stderr: _fn, ...options } = h.queryOptions(sb, api, { policy });
  const config = sb.file('bot.json');
  fs.writeFileSync(config, JSON.stringify({ prompt: 'Sleep for a while.', options }));

  const botOut = fs.openSync(sb.file('bot.out'), 'w');
  const bot = spawn(process.execPath, [path.join(h.SDK_DIR, 'lib', 'bot.mjs'), config], {
    cwd: h.SDK_DIR, env: { ...process.env, [h.TAG_VAR]: sb.tag }, stdio: ['ignore', botOut, botOut],
  });
  fs.closeSync(botOut);
  const botExit = new Promise((resolve) => bot.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => { try { bot.kill('SIGKILL'); } catch { /* gone */ } });

  const cg = await h.waitForFile(cgFile, { timeoutMs: 30000 }).catch((e) => {
    throw new Error(`${e.message}\nbot output:\n${fs.readFileSync(sb.file('bot.out'), 'utf8')}`);
  });
  assert.ok(cg.startsWith(sb.cgroupParent + '/'), `not run in a cage: ${cg}`);
  const sleeping = await h.waitFor(() => h.cgroupPids(cg).some((p) => /^sleep 300/.test(h.cmdline(p))), { timeoutMs: 5000 });
  assert.ok(sleeping, `no "sleep 300" in ${cg}`);
  const inCage = h.cgroupPids(cg);
  const launcher = h.taggedPids(sb.tag).filter((p) => h.cmdline(p).includes(`run --policy ${policy} --name ${sb.name} --`));
  assert.equal(launcher.length, 1, `claude-cage process not found: ${h.describePids(h.taggedPids(sb.tag))}`);

  const t0 = Date.now();
  bot.kill('SIGKILL');
  assert.deepEqual(await botExit, { code: null, signal: 'SIGKILL' });
  const gone = await h.waitFor(
    () => !fs.existsSync(cg) && inCage.every((p) => !h.pidAlive(p)) && !h.pidAlive(launcher[0]),
    { timeoutMs: 10000, intervalMs: 20 });
  const elapsed = Date.now() - t0;
  assert.ok(gone, `10 s after the bot died: cgroup exists=${fs.existsSync(cg)}, claude-cage alive=${h.pidAlive(launcher[0])}, `
    + `alive in cage: ${h.describePids(inCage.filter(h.pidAlive))}`);
  t.diagnostic(`cage and claude-cage gone ${elapsed} ms after the bot was killed`);
  const exit = h.readEvents(events).find((e) => e.event === 'exit');
  t.diagnostic(`exit event: ${JSON.stringify(exit)}`);
  assert.ok(['parent-died'].includes(exit?.reason), `exit event: ${JSON.stringify(exit)}`);
  await h.assertNothingLeft(assert, sb);
});
