# The real Claude Code (the Agent SDK's native binary) in a cage with memory.high=480M and
# memory.max=500M (Claude Code itself holds ~115-190 MB here): its Bash tool runs `alloc 700`,
# which crosses memory.high (a snapshot: who holds the memory) and goes past memory.max; with
# oom-group the kernel OOM killer kills the whole cage, Claude Code included. claude-cage ends
# with 137, reason oom-killed, an oom-kill event, and one stderr line naming the OOM killer and
# the largest process, the allocation, with Claude Code beside it (the line the Agent SDK's
# error carries: tests/sdk/kill-message.test.mjs); no cgroup and no process is left.
# vmtest-timeout: 180
# vmtest-api: [{"bash": "alloc 700 && echo alloc-survived", "description": "allocate 700 MB"}, {"text": "the allocation survived"}]

port=$(sed -n "s/^$VMTEST_NAME //p" /vmtest/api)
assert_num "$port" "port of the stand-in API in /vmtest/api"
# busybox wget (static glibc) crashes on this; bash can talk HTTP.
bash -c 'exec 3<>"/dev/tcp/10.0.2.2/$0" && printf "GET /ping HTTP/1.0\r\n\r\n" >&3 && cat <&3' "$port" >"$T/ping" 2>&1
grep -q '^HTTP/1.. 200' "$T/ping" || fail "stand-in API not reachable at 10.0.2.2:$port: $(head -c 200 "$T/ping")"

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-claude"

[memory]
high = "480M"
max = "500M"
swap-max = "0"
oom-group = true
P
mkdir -p /tmp/home
dmesg_before=$(dmesg | wc -l)
ANTHROPIC_BASE_URL=http://10.0.2.2:$port ANTHROPIC_API_KEY=test CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
	HOME=/tmp/home SHELL=/bin/bash \
	cage claude --policy "$T/policy.toml" -- /opt/claude/claude -p 'Run the command.' \
	--output-format stream-json --verbose --allowedTools Bash </dev/null
dmesg | tail -n +"$((dmesg_before + 1))" | grep -E 'invoked oom-killer|oom-kill:|memory.oom.group|Killed process' >"$T/dmesg"

# Claude Code got as far as running the Bash tool, and no further.
grep -q '"type":"system","subtype":"init"' "$T/claude.out" || fail "Claude Code did not start its session: $(head -c 300 "$T/claude.err")"
if ! grep -q '"name":"Bash","input":{"command":"alloc 700' "$T/claude.out"; then
	grep -q '(claude)' "$T/dmesg" && fail "Claude Code was OOM-killed before its Bash tool ran (status $rc): does it need more than memory.max 500M now?"
	fail "no Bash tool_use 'alloc 700' in Claude Code's output (status $rc)"
fi
grep -q '"type":"tool_result"\|"type":"result"' "$T/claude.out" &&
	fail "the session went on after the allocation: $(grep -o '"type":"tool_result".\{0,200\}\|"type":"result".\{0,200\}' "$T/claude.out" | head -n 1)"

# The events and the line on stderr.
check_exit "$T/claude.events" "$rc" 137 oom-killed
assert_eq "$(ev_field "$T/claude.events" exit signal)" 9 "exit event signal"
assert_ge "$(ev_field "$T/claude.events" exit oom-kills)" 1 "exit event oom-kills"
assert_event "$T/claude.events" oom-kill
assert_event "$T/claude.events" memory-high
assert_ge "$(ev_field "$T/claude.events" oom-kill oom-kills)" 1 "oom-kill event oom-kills"
assert_eq "$(ev_field "$T/claude.events" start memory-max)" 524288000 "start limits memory-max"
assert_eq "$(ev_field "$T/claude.events" start oom-group)" true "start limits oom-group"
peak=$(ev_field "$T/claude.events" exit memory-peak)
assert_ge "$peak" $((480 * 1048576)) "exit event memory-peak"
[ "$peak" -le $((500 * 1048576)) ] || fail "memory-peak $peak above memory.max"
check_one_line "$T/claude.err" "$T/claude.events" 'killed by the kernel OOM killer at memory\.max 500\.0 MiB .*; largest: alloc [0-9.]+ MiB \(pid [0-9]+, alloc 700\), claude [0-9.]+ MiB$'

# The kernel's word: the cage hit its limit, and the allocation and Claude Code were killed in it.
grep -q 'Memory cgroup out of memory: Killed process [0-9]* (alloc)' "$T/dmesg" || fail "no OOM kill of alloc in dmesg"
grep -q 'Memory cgroup out of memory: Killed process [0-9]* (claude)' "$T/dmesg" || fail "no OOM kill of claude in dmesg"
grep -q "oom-kill:.*oom_memcg=/vm-claude/$(cage_id "$T/claude.events")" "$T/dmesg" ||
	fail "the OOM kill was not charged to the cage in dmesg"

check_gone "$T/claude.events" bot
# No process of the session is left (one pass over /proc: check_no_proc takes ~1 s each here).
left=
for p in /proc/[0-9]*; do
	c=$(cat "$p/comm" 2>/dev/null) || continue
	case "$c" in claude | alloc | bash) ;; *) continue ;; esac
	s=$(sed -n 's/.*) \(.\).*/\1/p' "$p/stat" 2>/dev/null)
	[ -n "$s" ] && [ "$s" != Z ] && left="$left ${p#/proc/}($c)"
done
[ -z "$left" ] || fail "processes left after the session:$left"
