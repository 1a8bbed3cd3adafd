// (g) `[lifetime] idle-timeout` under the SDK's streaming input: a query whose input stream
// stops yielding after its first turn leaves Claude Code waiting on stdin, using little
// CPU; the cage ends it, and the error the TypeScript SDK raises carries claude-cage's idle
// line. The control: a cage kept busy (a Bash tool spinning for twice the idle-timeout) is not
// ended as idle and its query finishes normally.
//
// idle-cpu is 10% here, not the default 0.5%: what this test proves is the mechanism (a cage
// found idle under the SDK's streaming input, and the line in the SDK's error), and Claude Code
// waiting on stdin is not at 0%, by an amount that depends on the host (cpu.stat on this
// suite's Claude Code, 3 s blocks after a turn's result). One day: ~6% for the first 3 s (the
// turn's own tail), then 0.4-0.6% with one ~2.7% block around 9-12 s, then ~0.1% from about
// 33 s on. Another day, same kind of host, three runs: 8-18% for the tail, then 1-10% for half a
// minute and 0.5-2.2% a minute after the result, so that the default never found it idle
// within 60 s. With 10% the cage is idle a few seconds after the tail; the control below spins
// at ~100%. The bound is still 50 s, not the 3 s the policy says.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

const IDLE_MS = 3000;
const BOUND_MS = 50000;
const POLICY = (events) => `[lifetime]\nidle-timeout = "3s"\nidle-cpu = "10%"\n\n[events]\nfile = "${events}"\n`;

function userMessage(text) {
  return { type: 'user', message: { role: 'user', content: text }, parent_tool_use_id: null, session_id: '' };
}

/** The cage's directory (the one child cgroup of the bot's) while it exists, else null. */
function cageDir(sb) {
  try {
    const dirs = fs.readdirSync(sb.cgroupParent, { withFileTypes: true }).filter((e) => e.isDirectory());
    return dirs.length === 1 ? path.join(sb.cgroupParent, dirs[0].name) : null;
  } catch { return null; }
}

/** `usage_usec` of a cgroup's cpu.stat (the whole subtree), or null when it is gone. */
function usageUsec(dir) {
  try {
    const m = /^usage_usec (\d+)$/m.exec(fs.readFileSync(path.join(dir, 'cpu.stat'), 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}

/** Like h.runQuery, but notes when (ms after the start) each message came. */
async function runTimed(prompt, options) {
  const { query } = await import('@anthropic-ai/claude-agent-sdk');
  const messages = [];
  const at = [];
  const started = Date.now();
  let error = null;
  try {
    for await (const m of query({ prompt, options })) {
      messages.push(m);
      at.push(Date.now() - started);
    }
  } catch (e) {
    error = e;
  }
  return { messages, at, error, ms: Date.now() - started };
}

test('idle-timeout: a query left waiting on its input is ended, the SDK error carries the idle line', { timeout: 90000 }, async (t) => {
  h.assertCageBuilt();
  const sb = h.sandbox(t, 'idle');
  const events = sb.file('events.jsonl');
  const api = await startStandIn({ script: [{ text: 'first turn done' }] });
  t.after(() => api.close());
  const policy = h.writePolicy(sb, POLICY(events));

  // One user message, then the stream neither yields nor ends until the test is over: Claude
  // Code finishes the turn and waits on stdin (which stays open), doing nothing.
  let release;
  const hold = new Promise((resolve) => { release = resolve; });
  t.after(() => release());
  async function* input() {
    yield userMessage('Say something.');
    await hold;
  }

  // A bound of our own, so that a cage never found idle fails with a measurement, not a hang.
  const ac = new AbortController();
  const guard = setTimeout(() => ac.abort(), BOUND_MS + 10000);
  t.after(() => clearTimeout(guard));
  // No stderr callback: exactly what a bot that only catches the error gets.
  const { stderr: _none, ...options } = h.queryOptions(sb, api, { policy, abortController: ac });

  // Meanwhile, the cage's CPU use as cpu.stat says, every 250 ms.
  const samples = [];
  let sampling = true;
  let cage = null;
  const t0 = Date.now();
  const sampler = (async () => {
    while (sampling) {
      cage ??= cageDir(sb);
      const u = cage && usageUsec(cage);
      if (u !== null && u !== undefined) samples.push({ ms: Date.now() - t0, usec: u });
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const r = await runTimed(input(), options);
  sampling = false;
  await sampler;
  clearTimeout(guard);

  const resIdx = r.messages.findIndex((m) => m.type === 'result');
  const resAt = resIdx >= 0 ? r.at[resIdx] : null;
  // Claude Code's CPU while waiting: from 3 s after the first turn's result (past the turn's own
  // tail) to the last sample.
  const waiting = samples.filter((s) => resAt !== null && s.ms >= resAt + 3000);
  const idleShare = waiting.length >= 2
    ? (waiting.at(-1).usec - waiting[0].usec) / 1000 / (waiting.at(-1).ms - waiting[0].ms) : null;
  t.diagnostic(`first result after ${resAt} ms; query ended after ${r.ms} ms (${r.ms - resAt} ms later): ${r.error?.message}`);
  t.diagnostic(`cage CPU while waiting on input (cpu.stat, ${waiting.length} samples): ${
    idleShare === null ? 'n/a' : `${(idleShare * 100).toFixed(3)}% of one CPU`}; whole run: ${
    samples.length ? `${(samples.at(-1).usec / 1000).toFixed(0)} ms CPU` : 'n/a'}`);
  const blocks = [];
  for (let i = samples.findIndex((s) => resAt !== null && s.ms >= resAt), j = i + 1; i >= 0 && j < samples.length; j++) {
    if (samples[j].ms - samples[i].ms < 3000) continue;
    blocks.push(((samples[j].usec - samples[i].usec) / 10 / (samples[j].ms - samples[i].ms)).toFixed(2));
    i = j;
  }
  t.diagnostic(`cage CPU in 3 s blocks after the result, % of one CPU: ${blocks.join(' ')}`);

  // The first turn did finish: the cage was idle waiting on input, not killed mid-turn.
  const res = h.result(r.messages);
  assert.ok(res, `no result for the first turn; messages: ${h.shape(r.messages)}`);
  assert.equal(res.subtype, 'success');
  assert.equal(res.result, 'first turn done');
  assert.deepEqual(h.shape(r.messages), ['system/init', 'assistant', 'result/success']);

  assert.ok(r.error, `no error raised; messages: ${h.shape(r.messages)}`);
  assert.ok(!ac.signal.aborted, `not ended within ${BOUND_MS + 10000} ms: the cage was never found idle (${r.error.message})`);
  assert.match(r.error.message, /^Claude Code process exited with code 124\. stderr: /);
  const line = new RegExp(`claude-cage: ${sb.name}-\\d+-\\d+: idle for (\\S+) \\(CPU ([\\d.]+)% of one CPU, below idle-cpu 10%\\); killed the cage after `);
  const m = line.exec(r.error.message);
  assert.ok(m, `no claude-cage idle line in: ${r.error.message}`);
  t.diagnostic(`claude-cage: idle for ${m[1]} at ${m[2]}% of one CPU`);
  assert.ok(Number(m[2]) <= 10, `idle at ${m[2]}%`); // rounded as claude-cage prints it: 9.97% is "10%"
  // Idle for a whole window after the turn's work, and not much more.
  assert.ok(r.ms - resAt >= IDLE_MS - 250, `ended ${r.ms - resAt} ms after the first result, before a whole idle-timeout`);
  assert.ok(r.ms < BOUND_MS, `took ${r.ms} ms`);

  assert.ok(cage, 'the cage cgroup was never seen');
  assert.ok(!fs.existsSync(cage), `cgroup ${cage} still exists`);
  const exit = h.readEvents(events).find((e) => e.event === 'exit');
  t.diagnostic(`exit event: ${JSON.stringify(exit)}`);
  assert.equal(exit?.reason, 'idle', `exit event: ${JSON.stringify(exit)}`);
  assert.equal(exit.status, 124);
  await h.assertNothingLeft(assert, sb);
});

test('idle-timeout control: a cage kept busy for twice the idle-timeout is not ended', { timeout: 60000 }, async (t) => {
  h.assertCageBuilt();
  const sb = h.sandbox(t, 'idlebusy');
  const events = sb.file('events.jsonl');
  // The busy loop runs in the Bash tool's process, not in Claude Code's own: the idle check must
  // count the whole cage (wherever Claude Code puts its tools) for this cage to stay alive.
  const api = await startStandIn({
    script: [
      { bash: `grep '^0::' /proc/self/cgroup; timeout 6 sh -c 'while :; do :; done'; echo busy-done`, timeout: 60000 },
      { text: 'busy turn done' },
    ],
  });
  t.after(() => api.close());
  const policy = h.writePolicy(sb, POLICY(events));
  const r = await h.runQuery('Run the command, then answer.', h.queryOptions(sb, api, { policy }));
  t.diagnostic(`query ended after ${r.ms} ms`);

  assert.equal(r.error, null, `query failed: ${r.error?.message}\nstderr: ${r.stderr}`);
  const res = h.result(r.messages);
  assert.equal(res?.subtype, 'success', `messages: ${h.shape(r.messages)}`);
  assert.equal(res.result, 'busy turn done');
  const [out] = h.toolResults(r.messages);
  assert.match(out ?? '', /busy-done/, `tool output: ${out}`);
  const rel = path.relative(h.cgroup2Mount(), sb.cgroupParent);
  assert.match(out, new RegExp(`^0::/${rel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/`, 'm'), `the Bash tool ran outside the cage: ${out}`);
  t.diagnostic(`the Bash tool's cgroup: ${/^0::(\S+)/m.exec(out)?.[1]}`);
  assert.ok(r.ms >= 6000, `took only ${r.ms} ms: the busy loop did not run 6 s`);
  assert.doesNotMatch(r.stderr, /idle for/);

  const exit = h.readEvents(events).find((e) => e.event === 'exit');
  t.diagnostic(`exit event: ${JSON.stringify(exit)}`);
  assert.equal(exit?.reason, 'exited', `exit event: ${JSON.stringify(exit)}`);
  assert.equal(exit.status, 0);
  await h.assertNothingLeft(assert, sb);
});
