// The examples of docs/agent-sdk.md, run as pasted: the policy, the TypeScript bot and the
// Python bot. Only their paths are swapped for this sandbox's (claude-cage binary, policy,
// shim, events file), plus the bot name and, for the kill case, max-runtime.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

const DOC = path.join(h.ROOT, 'docs', 'agent-sdk.md');

function example(name) {
  const text = fs.readFileSync(DOC, 'utf8');
  const m = new RegExp(`<!-- sdk-test: ${name} -->\\s*\`\`\`[a-z]*\\n([\\s\\S]*?)\\n\`\`\``).exec(text);
  assert.ok(m, `no example "${name}" in ${DOC}`);
  return m[1];
}

function swap(text, pairs) {
  for (const [from, to] of pairs) {
    assert.ok(text.includes(from), `the example no longer contains ${from}`);
    text = text.split(from).join(to);
  }
  return text;
}

function exec(cmd, args, opts) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60000, maxBuffer: 16 << 20, ...opts }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? 'killed') : 0, stdout, stderr }));
  });
}

async function setup(t, label, { kill }) {
  h.assertCageBuilt();
  const sb = h.sandbox(t, label);
  const api = await startStandIn({
    script: kill
      ? [{ bash: 'uname -a; sleep 300', timeout: 600000 }, { text: 'never reached' }]
      : [{ bash: 'uname -a' }, { text: 'docs example done' }],
  });
  t.after(() => api.close());
  const events = sb.file('events.jsonl');
  const policy = sb.file('support-bot.toml');
  fs.writeFileSync(policy, swap(example('policy'), [
    ['name = "support-bot"', `name = "${sb.name}"`],
    ['file = "/var/log/claude-cage/support-bot.jsonl"', `file = "${events}"`],
    ...(kill ? [['max-runtime = "2h"', 'max-runtime = "3s"']] : []),
  ]));
  return { sb, api, events, policy, env: h.cliEnv(sb, api) };
}

for (const kill of [false, true]) {
  test(`docs TypeScript example${kill ? ': killed by max-runtime' : ''}`, { timeout: 60000 }, async (t) => {
    const { sb, env, policy, events } = await setup(t, kill ? 'doc-ts-kill' : 'doc-ts', { kill });
    // Inside tests/sdk so that the example's imports resolve to tests/sdk/node_modules.
    const dir = fs.mkdtempSync(path.join(h.SDK_DIR, '.tmp-doc-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const bot = path.join(dir, 'bot.mjs');
    fs.writeFileSync(bot, swap(example('ts-example'), [
      ["'/usr/bin/claude-cage'", JSON.stringify(h.CAGE_BIN)],
      ["'/etc/claude-cage/support-bot.toml'", JSON.stringify(policy)],
    ]));
    const r = await exec(process.execPath, [bot], { cwd: sb.cwd, env });
    if (!kill) {
      assert.equal(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.match(r.stdout, /^result: docs example done$/m);
      assert.equal(h.readEvents(events).find((e) => e.event === 'exit')?.reason, 'exited');
    } else {
      assert.equal(r.code, 1, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^query failed: Claude Code process exited with code 124\\. stderr: [\\s\\S]*`
        + `claude-cage: ${sb.name}-\\d+-\\d+: max-runtime 3\\.0s ran out; killed the cage`, 'm'));
      t.diagnostic(r.stderr.trim());
    }
    await h.assertNothingLeft(assert, sb);
  });

  test(`docs Python example${kill ? ': killed by max-runtime' : ''}`, { timeout: 60000 }, async (t) => {
    assert.ok(fs.existsSync(h.VENV_PYTHON), `no venv python at ${h.VENV_PYTHON}: run tests/sdk/run`);
    const { sb, env, policy, events } = await setup(t, kill ? 'doc-py-kill' : 'doc-py', { kill });
    const shimDir = sb.file('shim');
    execFileSync(h.CAGE_BIN, ['install-shim', shimDir]);
    const bot = sb.file('bot.py');
    fs.writeFileSync(bot, swap(example('py-example'), [
      ['"/usr/local/lib/claude-cage/claude"', JSON.stringify(path.join(shimDir, 'claude'))],
      ['"/etc/claude-cage/support-bot.toml"', JSON.stringify(policy)],
      ['"/var/log/claude-cage/support-bot.jsonl"', JSON.stringify(events)],
    ]));
    const r = await exec(h.VENV_PYTHON, [bot], { cwd: sb.cwd, env });
    if (!kill) {
      assert.equal(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.match(r.stdout, /^result: docs example done$/m);
      const start = h.readEvents(events).find((e) => e.event === 'start');
      assert.match(start?.program ?? '', /claude_agent_sdk\/_bundled\/claude$/, 'CLAUDE_CAGE_PROGRAM not used');
    } else {
      assert.equal(r.code, 1, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.match(r.stdout, /^query failed: exit code 124$/m);
      assert.match(r.stdout, new RegExp(`^claude-cage: ${sb.name}-\\d+-\\d+: max-runtime 3\\.0s ran out`, 'm'));
      assert.match(r.stdout, new RegExp(`^cage ${sb.name}-\\d+-\\d+: timeout, status 124, leftover \\d+$`, 'm'));
      t.diagnostic(r.stdout.trim());
    }
    await h.assertNothingLeft(assert, sb);
  });
}
