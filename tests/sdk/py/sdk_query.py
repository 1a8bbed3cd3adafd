"""Run one query with the Python Agent SDK (claude-agent-sdk) and print a JSON summary.

Usage: python sdk_query.py CONFIG.json
CONFIG: {"cli_path": ..., "prompt": ..., "cwd": ..., "preflight": true|false}
The environment (ANTHROPIC_BASE_URL, CLAUDE_CAGE_POLICY, CLAUDE_CAGE_PROGRAM, ...) comes from the
caller: the SDK hands os.environ to the CLI. The last line of stdout is the JSON summary.
"""
import asyncio
import json
import subprocess
import sys
import time

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ProcessError,
    ResultMessage,
    SystemMessage,
    ToolResultBlock,
    UserMessage,
    __version__,
    query,
)


def preflight(cli_path):
    """`cli_path -v` with a 2 s timeout, as SDK versions before the init-frame check did."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([cli_path, "-v"], capture_output=True, text=True, timeout=2)
        return {"rc": p.returncode, "stdout": p.stdout.strip(), "stderr": p.stderr.strip(),
                "ms": int((time.monotonic() - t0) * 1000)}
    except subprocess.TimeoutExpired:
        return {"rc": None, "stdout": "", "stderr": "timed out after 2 s", "ms": 2000}


async def run(cfg):
    out = {"sdk_version": __version__, "shape": [], "result": None, "tool_results": [],
           "error": None, "stderr_lines": []}
    if cfg.get("preflight"):
        out["preflight"] = preflight(cfg["cli_path"])
    options = ClaudeAgentOptions(
        cli_path=cfg["cli_path"],
        cwd=cfg["cwd"],
        allowed_tools=["Bash"],
        setting_sources=[],
        stderr=out["stderr_lines"].append,
    )
    t0 = time.monotonic()
    try:
        async for m in query(prompt=cfg["prompt"], options=options):
            if isinstance(m, SystemMessage):
                out["shape"].append(f"system/{m.subtype}")
            elif isinstance(m, AssistantMessage):
                out["shape"].append("assistant")
            elif isinstance(m, UserMessage):
                out["shape"].append("user")
                if isinstance(m.content, list):
                    for b in m.content:
                        if isinstance(b, ToolResultBlock):
                            c = b.content
                            if isinstance(c, list):
                                c = "".join(x.get("text", "") for x in c)
                            out["tool_results"].append(c or "")
            elif isinstance(m, ResultMessage):
                out["shape"].append(f"result/{m.subtype}")
                out["result"] = m.result
            else:
                out["shape"].append(type(m).__name__)
    except ProcessError as e:
        out["error"] = {"type": type(e).__name__, "message": str(e), "exit_code": e.exit_code}
    except Exception as e:  # noqa: BLE001 - reported to the node test
        out["error"] = {"type": type(e).__name__, "message": str(e), "exit_code": None}
    out["ms"] = int((time.monotonic() - t0) * 1000)
    return out


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    print(json.dumps(asyncio.run(run(cfg))), flush=True)


if __name__ == "__main__":
    main()
