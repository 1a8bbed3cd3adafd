# exploration
# vmtest-timeout: 400
# vmtest-api: [{"bash": "echo hi; cat /proc/self/cgroup; cat $CLAUDE_CAGE_CGROUP/memory.current $CLAUDE_CAGE_CGROUP/memory.stat | head -5; ps -o pid,rss,vsz,comm", "description": "look"}, {"text": "done"}]
port=$(sed -n "s/^$VMTEST_NAME //p" /vmtest/api)
url=http://10.0.2.2:$port
wget -q -T 10 -O "$T/ping" "$url/ping" || fail "stand-in API not reachable at $url"
mkdir -p /tmp/home
cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-claude"
P
export ANTHROPIC_BASE_URL=$url ANTHROPIC_API_KEY=test CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 HOME=/tmp/home SHELL=/bin/bash
cage c1 --policy "$T/policy.toml" -- /opt/claude/claude -p go --output-format stream-json --verbose --allowedTools Bash </dev/null
cat $T/c1.events; cat $T/c1.err | head -20; cut -c1-1500 $T/c1.out
cage c2 --policy "$T/policy.toml" -- /opt/claude/claude -p go --output-format stream-json --verbose --allowedTools Bash </dev/null
cat $T/c2.events
free -m
fail "exploration"
