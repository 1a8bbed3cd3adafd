// /opt/ts-bot/bot.mjs: the TypeScript bot of docs/quickstart.md. One query per line of stdin
// would be a real bot's loop; this one asks one question and logs the answer or why it failed.
// npm install @anthropic-ai/claude-agent-sdk (in /opt/ts-bot)
import path from 'node:path';
import { createRequire } from 'node:module';
import { query } from '@anthropic-ai/claude-agent-sdk';

const require = createRequire(import.meta.url);
// The native Claude Code of the SDK's own platform package: the one the SDK would run itself.
const CLAUDE = path.join(
  path.dirname(require.resolve('@anthropic-ai/claude-agent-sdk-linux-x64/package.json')), 'claude');

try {
  for await (const message of query({
    prompt: process.env.BOT_PROMPT ?? 'Run `uname -a` and tell me what you see.',
    options: {
      // The one change a bot needs: claude-cage starts Claude Code, in a cage.
      pathToClaudeCodeExecutable: '/usr/bin/claude-cage',
      executableArgs: ['run', '--policy', '/etc/claude-cage/ts-bot.toml', '--', CLAUDE],
      mcpServersDelivery: 'initialize',
      allowedTools: ['Bash'],
    },
  })) {
    if (message.type === 'result') console.log(`result: ${message.result}`);
  }
} catch (err) {
  // When claude-cage ended the child, the message ends with its "claude-cage: ..." line.
  console.error(`query failed: ${err.message}`);
  process.exitCode = 1;
}
