// (e) Python SDK (claude-agent-sdk, pinned in tests/sdk/run) through the shim: a symlink named
// `claude` pointing at claude-cage, given as cli_path. `claude -v` answers within the 2 s the
// SDKs allow, a query completes inside a cage, and a cage kill is visible in the events file.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import * as h from './lib/harness.mjs';
import { startStandIn } from './lib/stand-in-api.mjs';

function runPython(sb, cfg, env) {
  const cfgFile = sb.file('py.json');
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  return new Promise((resolve) => {
    execFile(h.VENV_PYTHON, [path.join(h.SDK_DIR, 'py', 'sdk_query.py'), cfgFile],
      { env, timeout: 60000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        const last = stdout.trim().split('\n').pop();
        let out = null;
        try { out = JSON.parse(last); } catch { /* reported below */ }
        resolve({ err, out, stdout, stderr });
      });
  });
}

// The shim as the docs make it: `claude-cage install-shim DIR` (prints the symlink's path).
function installShim(sb) {
  const dir = sb.file('shim');
  const out = execFileSync(h.CAGE_BIN, ['install-shim', dir], { encoding: 'utf8' }).trim();
  const link = path.join(dir, 'claude');
  assert.equal(fs.readlinkSync(link), fs.realpathSync(h.CAGE_BIN), `install-shim said: ${out}`);
  return { dir, link };
}

// The same by hand: any symlink named `claude` to the binary.
function handMadeShim(sb) {
  const dir = sb.file('shim');
  fs.mkdirSync(dir);
  const link = path.join(dir, 'claude');
  fs.symlinkSync(h.CAGE_BIN, link);
  return { dir, link };
}

test('python SDK via the shim (CLAUDE_CAGE_PROGRAM): -v preflight and a query in a cage', { timeout: 90000 }, async (t) => {
  h.assertCageBuilt();
  assert.ok(fs.existsSync(h.VENV_PYTHON), `no venv python at ${h.VENV_PYTHON}: run tests/sdk/run`);
  const sb = h.sandbox(t, 'py');
  const api = await startStandIn({
    script: [{ bash: 'echo "cage=${CLAUDE_CAGE_CGROUP:-none}"' }, { text: 'python says done' }],
  });
  t.after(() => api.close());
  const events = sb.file('events.jsonl');
  // As root, shim mode takes CLAUDE_CAGE_PROGRAM only from a policy that opts in.
  const policy = h.writePolicy(sb,
    `program-from-env = true\n\n[cage]\nname = "${sb.name}"\n\n[events]\nfile = "${events}"\n`);
  const { link } = installShim(sb);
  const env = h.cliEnv(sb, api, { CLAUDE_CAGE_POLICY: policy, CLAUDE_CAGE_PROGRAM: h.NATIVE_CLAUDE });

  const { err, out, stdout, stderr } = await runPython(sb, { cli_path: link, cwd: sb.cwd, prompt: 'Run it.', preflight: true }, env);
  assert.ok(out, `python gave no summary (${err?.message})\nstdout: ${stdout}\nstderr: ${stderr}`);
  t.diagnostic(`claude-agent-sdk ${out.sdk_version}; -v took ${out.preflight.ms} ms; query ${out.ms} ms`);

  assert.equal(out.preflight.rc, 0, `-v failed: ${JSON.stringify(out.preflight)}`);
  assert.match(out.preflight.stdout, /^\d+\.\d+\.\d+ \(Claude Code\)$/);
  assert.ok(out.preflight.ms < 2000);
  assert.equal(out.error, null, `query failed: ${JSON.stringify(out.error)}\nstderr: ${stderr}`);
  assert.equal(out.result, 'python says done');
  assert.deepEqual(out.shape, ['system/init', 'assistant', 'user', 'assistant', 'result/success']);
  const cg = /cage=(\S+)/.exec(out.tool_results[0] ?? '')?.[1];
  assert.ok(cg?.startsWith(`${sb.cgroupParent}/${sb.name}-`), `Bash did not run in a cage: ${out.tool_results}`);

  // Two runs went through the shim (-v and the query), each a cage of its own, each recorded.
  const ev = h.readEvents(events);
  const starts = ev.filter((e) => e.event === 'start');
  const exits = ev.filter((e) => e.event === 'exit');
  assert.equal(starts.length, 2, JSON.stringify(ev));
  for (const s of starts) assert.equal(s.program, h.NATIVE_CLAUDE);
  assert.equal(starts[0].argv.at(-1), '-v', `first start event: ${JSON.stringify(starts[0])}`);
  assert.deepEqual(exits.map((e) => [e.reason, e.status]), [['exited', 0], ['exited', 0]]);
  await h.assertNothingLeft(assert, sb);
});

test('python SDK via the shim (program from PATH): a cage kill shows in ProcessError, stderr callback and events file', { timeout: 90000 }, async (t) => {
  h.assertCageBuilt();
  const sb = h.sandbox(t, 'pykill');
  const api = await startStandIn({
    script: [{ bash: 'echo "$CLAUDE_CAGE_CGROUP"; sleep 300', timeout: 600000 }, { text: 'never reached' }],
  });
  t.after(() => api.close());
  const events = sb.file('events.jsonl');
  const policy = h.writePolicy(sb,
    `[cage]\nname = "${sb.name}"\n\n[lifetime]\nmax-runtime = "3s"\n\n[events]\nfile = "${events}"\n`);
  const { dir, link } = handMadeShim(sb);
  // No CLAUDE_CAGE_PROGRAM: the shim finds "claude" in PATH, skipping itself (first in PATH).
  const env = h.cliEnv(sb, api, {
    CLAUDE_CAGE_POLICY: policy,
    PATH: [dir, path.dirname(h.NATIVE_CLAUDE), process.env.PATH].join(':'),
  });
  const { err, out, stdout, stderr } = await runPython(sb, { cli_path: link, cwd: sb.cwd, prompt: 'Sleep.' }, env);
  assert.ok(out, `python gave no summary (${err?.message})\nstdout: ${stdout}\nstderr: ${stderr}`);
  t.diagnostic(`python error after ${out.ms} ms: ${JSON.stringify(out.error)}`);

  assert.equal(out.error?.type, 'ProcessError', JSON.stringify(out));
  assert.equal(out.error.exit_code, 124);
  assert.doesNotMatch(out.error.message, /claude-cage:/, 'the Python SDK now includes stderr: update docs/agent-sdk.md');
  assert.ok(out.stderr_lines.some((l) => new RegExp(`^claude-cage: ${sb.name}-\\d+-\\d+: `).test(l)),
    `no claude-cage: line through the stderr callback: ${JSON.stringify(out.stderr_lines)}`);
  const ev = h.readEvents(events);
  const start = ev.find((e) => e.event === 'start');
  assert.equal(start?.program, h.NATIVE_CLAUDE, 'the shim did not find the native claude in PATH');
  const exit = ev.find((e) => e.event === 'exit');
  assert.equal(exit?.reason, 'timeout', JSON.stringify(ev));
  assert.equal(exit.status, 124);
  await h.assertNothingLeft(assert, sb);
});
