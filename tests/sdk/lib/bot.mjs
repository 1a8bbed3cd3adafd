// A minimal "bot": runs one query with the options given as JSON in argv[2] and prints each
// message as a JSON line. Test (d) SIGKILLs it mid-query to check that the cage goes with it.
import fs from 'node:fs';
import { query } from '@anthropic-ai/claude-agent-sdk';

const { prompt, options } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
process.stdout.write(`${JSON.stringify({ type: 'bot-started', pid: process.pid })}\n`);
try {
  for await (const m of query({ prompt, options: { ...options, stderr: (d) => process.stderr.write(d) } })) {
    process.stdout.write(`${JSON.stringify(m)}\n`);
  }
} catch (e) {
  process.stdout.write(`${JSON.stringify({ type: 'bot-error', message: String(e?.message ?? e) })}\n`);
  process.exitCode = 1;
}
