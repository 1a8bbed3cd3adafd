# /opt/py-bot/bot.py: the Python bot of docs/quickstart.md. It asks one question and logs the
# answer or why it failed; a real bot's loop goes around the query.
# python3 -m venv /opt/py-bot/venv && /opt/py-bot/venv/bin/pip install claude-agent-sdk
import asyncio
import os
import sys
from pathlib import Path

import claude_agent_sdk
from claude_agent_sdk import ClaudeAgentOptions, ProcessError, ResultMessage, query

cage_lines = []


def on_stderr(line: str) -> None:
    if line.startswith("claude-cage: "):
        cage_lines.append(line)


async def main() -> int:
    options = ClaudeAgentOptions(
        # The one change a bot needs: the shim (`claude-cage install-shim`) starts Claude Code,
        # in a cage, with the policy and program named here.
        cli_path="/usr/local/lib/claude-cage/claude",
        env={
            "CLAUDE_CAGE_POLICY": "/etc/claude-cage/py-bot.toml",
            "CLAUDE_CAGE_PROGRAM": str(Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"),
        },
        allowed_tools=["Bash"],
        stderr=on_stderr,
    )
    prompt = os.environ.get("BOT_PROMPT", "Run `uname -a` and tell me what you see.")
    try:
        async for message in query(prompt=prompt, options=options):
            if isinstance(message, ResultMessage):
                print(f"result: {message.result}", flush=True)
    except ProcessError as e:
        # The SDK's error does not carry stderr: claude-cage's line came through on_stderr.
        print(f"query failed: exit code {e.exit_code}: {' '.join(cage_lines)}", file=sys.stderr)
        return 1
    return 0


sys.exit(asyncio.run(main()))
