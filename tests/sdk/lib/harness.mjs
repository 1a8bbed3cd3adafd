// Shared helpers for the Agent SDK end-to-end tests of claude-cage.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(import.meta.url);

export const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(SDK_DIR, '..', '..');
export const CAGE_BIN = process.env.CLAUDE_CAGE_BIN ?? path.join(ROOT, 'target', 'release', 'claude-cage');
export const NATIVE_CLAUDE = path.join(
  path.dirname(require.resolve('@anthropic-ai/claude-agent-sdk-linux-x64/package.json')), 'claude');
export const VENV_PYTHON = process.env.SDK_VENV_PYTHON ?? path.join(ROOT, 'target', 'sdk-venv', 'bin', 'python');
// Every process a test starts carries this variable (value: the test's own tag), so leftovers
// can be found in /proc/*/environ whatever they were reparented to.
export const TAG_VAR = 'CLAUDE_CAGE_SDK_TEST';

export function cageBuilt() {
  try { fs.accessSync(CAGE_BIN, fs.constants.X_OK); return true; } catch { return false; }
}

export function assertCageBuilt() {
  if (!cageBuilt()) throw new Error(`claude-cage binary not found at ${CAGE_BIN}: run tests/sdk/run (it builds it)`);
}

/** The cgroup2 mount point, from /proc/self/mountinfo (never assume /sys/fs/cgroup). */
export function cgroup2Mount() {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!post) continue;
    if (post.split(' ')[0] === 'cgroup2') return pre.split(' ')[4];
  }
  throw new Error('no cgroup2 mount in /proc/self/mountinfo');
}

/**
 * Where `parent = "auto"` puts a bot's cgroup for a claude-cage started from this process: the
 * cgroup2 root when we run in the root cgroup, else the parent of our own cgroup (which
 * claude-cage accepts only when it was delegated).
 */
export function autoParent() {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  const own = line ? line.slice(3) : '/';
  const mount = cgroup2Mount();
  return own === '/' ? mount : path.dirname(path.join(mount, own));
}

// ---------------------------------------------------------------- processes

/** State letter of a pid from /proc/PID/stat, or null when the pid does not exist. */
export function pidState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch { return null; }
}

/** A pid counts as alive when it exists and is not a zombie (zombies hold nothing but a slot). */
export function pidAlive(pid) {
  const s = pidState(pid);
  return s !== null && s !== 'Z' && s !== 'X';
}

function allPids() {
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}

/** Live pids whose environment holds TAG_VAR=tag (or any TAG_VAR when tag is null). */
export function taggedPids(tag = null) {
  const needle = Buffer.from(tag === null ? `${TAG_VAR}=` : `${TAG_VAR}=${tag}\0`);
  const out = [];
  for (const pid of allPids()) {
    if (pid === process.pid) continue;
    let env;
    try { env = fs.readFileSync(`/proc/${pid}/environ`); } catch { continue; }
    const hay = Buffer.concat([Buffer.from('\0'), env]);
    if (hay.includes(Buffer.concat([Buffer.from('\0'), needle])) && pidAlive(pid)) out.push(pid);
  }
  return out;
}

export function cmdline(pid) {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' '); }
  catch { return '?'; }
}

export function exeOf(pid) {
  try { return fs.readlinkSync(`/proc/${pid}/exe`); } catch { return null; }
}

export function describePids(pids) {
  return pids.map((p) => `${p}[${pidState(p)}] ${cmdline(p)}`).join('; ');
}

/** Poll fn() until it returns a truthy value or the deadline passes; returns the last value. */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= deadline) return v;
    await sleep(intervalMs);
  }
}

export async function waitForFile(file, { timeoutMs = 30000 } = {}) {
  const ok = await waitFor(() => {
    try { return fs.readFileSync(file, 'utf8').trim() !== ''; } catch { return false; }
  }, { timeoutMs });
  if (!ok) throw new Error(`timed out after ${timeoutMs} ms waiting for ${file}`);
  return fs.readFileSync(file, 'utf8').trim();
}

// ---------------------------------------------------------------- cgroups

/** Every pid in a cgroup subtree (empty when the directory is gone). */
export function cgroupPids(dir) {
  const out = [];
  const walk = (d) => {
    let entries;
    try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    try {
      for (const p of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n')) if (p) out.push(Number(p));
    } catch { /* removed meanwhile */ }
    for (const e of entries) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  walk(dir);
  return out;
}

function cgroupDirsBottomUp(dir) {
  const out = [];
  const walk = (d) => {
    let entries;
    try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of entries) if (e.isDirectory()) walk(path.join(d, e.name));
    out.push(d);
  };
  walk(dir);
  return out;
}

/** Test-side cleanup of a cgroup subtree the engine left behind: cgroup.kill, then rmdir bottom-up. */
export async function destroyCgroup(dir) {
  if (!fs.existsSync(dir)) return;
  try { fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1'); } catch { /* old kernel or gone */ }
  for (const pid of cgroupPids(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  await waitFor(() => cgroupPids(dir).length === 0, { timeoutMs: 3000 });
  for (let attempt = 0; attempt < 50 && fs.existsSync(dir); attempt++) {
    for (const d of cgroupDirsBottomUp(dir)) { try { fs.rmdirSync(d); } catch { /* EBUSY for a few ms */ } }
    if (fs.existsSync(dir)) await sleep(20);
  }
}

// ---------------------------------------------------------------- per-test sandbox

/**
 * A throwaway directory with HOME, CLAUDE_CONFIG_DIR, a working directory and TMPDIR, a unique
 * cage name and a unique tag. Registers cleanup on the test context: leftover tagged processes
 * are killed and a leftover cgroup is destroyed; the test itself asserts that there were none.
 */
export function sandbox(t, label) {
  const id = `${label}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `claude-cage-sdk-${label}-`));
  const sb = {
    id,
    tag: id,
    name: `sdk-${id}`,
    dir,
    home: path.join(dir, 'home'),
    configDir: path.join(dir, 'home', '.claude'),
    cwd: path.join(dir, 'work'),
    tmp: path.join(dir, 'tmp'),
    file: (name) => path.join(dir, name),
  };
  for (const d of [sb.home, sb.configDir, sb.cwd, sb.tmp]) fs.mkdirSync(d, { recursive: true });
  sb.cgroupParent = path.join(autoParent(), sb.name);
  t.after(async () => {
    for (const pid of taggedPids(sb.tag)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    await waitFor(() => taggedPids(sb.tag).length === 0, { timeoutMs: 3000 });
    await destroyCgroup(sb.cgroupParent);
    // The bot's tally: the counters of its ended cages that claude-cage keeps in its state
    // directory (root's, as these tests run).
    fs.rmSync(`/run/claude-cage/${sb.name}.tally`, { force: true });
    if (!process.env.SDK_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  });
  return sb;
}

/** The environment handed to the CLI (and so to claude-cage and the Bash tool): clean, explicit. */
export function cliEnv(sb, api, extra = {}) {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    HOME: sb.home,
    CLAUDE_CONFIG_DIR: sb.configDir,
    TMPDIR: sb.tmp,
    ANTHROPIC_BASE_URL: api.url,
    ANTHROPIC_API_KEY: 'sk-ant-stand-in',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    [TAG_VAR]: sb.tag,
    ...extra,
  };
}

/** Write a policy file (TOML) into the sandbox and return its path. */
export function writePolicy(sb, toml = '', file = 'policy.toml') {
  const p = sb.file(file);
  fs.writeFileSync(p, toml);
  return p;
}

/** executableArgs for the TypeScript SDK: claude-cage run --policy P --name N -- <native claude>. */
export function cageArgs(sb, policy, extra = []) {
  return ['run', '--policy', policy, '--name', sb.name, ...extra, '--', NATIVE_CLAUDE];
}

/**
 * Options for query(): through the cage when `policy` is given, else the native CLI directly.
 * The SDK hands its own arguments after executableArgs.
 */
export function queryOptions(sb, api, { policy = null, cageExtra = [], env = {}, abortController, stderrLines = [] } = {}) {
  const opts = {
    cwd: sb.cwd,
    env: cliEnv(sb, api, env),
    allowedTools: ['Bash'],
    settingSources: [],
    persistSession: false,
    stderr: (data) => { stderrLines.push(data); },
    // Same delivery for both so that runs differ only in the executable (see docs/agent-sdk.md).
    mcpServersDelivery: 'initialize',
  };
  if (abortController) opts.abortController = abortController;
  if (policy) {
    opts.pathToClaudeCodeExecutable = CAGE_BIN;
    opts.executableArgs = cageArgs(sb, policy, cageExtra);
  } else {
    opts.pathToClaudeCodeExecutable = NATIVE_CLAUDE;
  }
  return opts;
}

/** Run one query to its end; never throws: returns { messages, error, stderr (what the stderr callback got), ms }. */
export async function runQuery(prompt, options) {
  const { query } = await import('@anthropic-ai/claude-agent-sdk');
  const stderr = [];
  const userStderr = options.stderr;
  const messages = [];
  const started = Date.now();
  let error = null;
  try {
    // Without a stderr callback of the caller's, none is installed: the SDK keeps its own
    // stderr tail for its error messages either way.
    const opts = userStderr ? { ...options, stderr: (d) => { stderr.push(d); userStderr(d); } } : options;
    for await (const m of query({ prompt, options: opts })) {
      messages.push(m);
    }
  } catch (e) {
    error = e;
  }
  return { messages, error, stderr: stderr.join(''), ms: Date.now() - started };
}

/** The shape of a conversation for comparison: "system/init", "assistant", "user", "result/success"... */
export function shape(messages) {
  return messages
    .filter((m) => m.type !== 'stream_event')
    .map((m) => (m.subtype ? `${m.type}/${m.subtype}` : m.type));
}

export function toolResults(messages) {
  const out = [];
  for (const m of messages) {
    if (m.type !== 'user' || !Array.isArray(m.message?.content)) continue;
    for (const b of m.message.content) {
      if (b.type !== 'tool_result') continue;
      out.push(typeof b.content === 'string' ? b.content : (b.content ?? []).map((c) => c.text ?? '').join(''));
    }
  }
  return out;
}

export function result(messages) {
  return messages.find((m) => m.type === 'result') ?? null;
}

/** Assert no tagged process and no cgroup of this sandbox is left; details in the message. */
export async function assertNothingLeft(assert, sb, { timeoutMs = 5000 } = {}) {
  const clean = await waitFor(() => taggedPids(sb.tag).length === 0 && !fs.existsSync(sb.cgroupParent), { timeoutMs });
  if (!clean) {
    const pids = taggedPids(sb.tag);
    assert.fail(`left behind after ${timeoutMs} ms: processes [${describePids(pids)}], cgroup ${
      fs.existsSync(sb.cgroupParent) ? `${sb.cgroupParent} (pids ${cgroupPids(sb.cgroupParent).join(',')})` : 'none'}`);
  }
}

/** The JSON lines of an events file (empty when it does not exist). */
export function readEvents(file) {
  let text;
  try { text = fs.readFileSync(file, 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}
