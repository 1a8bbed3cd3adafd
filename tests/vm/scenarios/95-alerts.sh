# Alerts: an allocation that crosses memory.high and then the memory-warn threshold, under a
# PSI trigger, delivers a memory-warn and a pressure event to the exec hook, which records the
# JSON lines it receives on stdin. Then an abnormal exit reaches the hook too.
#
# The allocation ends just over memory.high (34M of anonymous memory, no swap, high 32M): the
# kernel throttles every charge past memory.high, and the further over, the longer each sleep.
# Far over (40M), with a hook in a cgroup of its own starting every second on the pressure event,
# each charge pays the full 2 s penalty and the allocation all but stops: the kernel's per-CPU
# charge stock of the cage is drained whenever another cgroup charges memory on that CPU.
# vmtest-timeout: 240

cat >"$T/hook" <<H
#!/bin/sh
cat >> "$T/hook.log"
echo >> "$T/hook.log"
H
chmod +x "$T/hook"

cat >"$T/policy.toml" <<P
[cage]
name = "vm-alerts"

[memory]
high = "32M"
max = "96M"

[alerts]
memory-warn = "33M"
pressure = "some 1% 1s"
exec = ["$T/hook"]
exec-timeout = "5s"
P
cage alerts --policy "$T/policy.toml" -- alloc 34
check_exit "$T/alerts.events" "$rc" 0 exited
assert_event "$T/alerts.events" memory-high
assert_event "$T/alerts.events" memory-warn
assert_eq "$(ev_field "$T/alerts.events" memory-warn threshold)" 34603008 "memory-warn threshold"
assert_ge "$(ev_field "$T/alerts.events" memory-warn memory-current)" 34603008 "memory-warn memory-current"
assert_event "$T/alerts.events" pressure
assert_eq "$(ev_field "$T/alerts.events" pressure trigger)" "some 1% 1.0s" "pressure trigger"
# Once per crossing: the allocation crosses the threshold once.
assert_eq "$(ev_count "$T/alerts.events" memory-warn)" 1 "memory-warn events"
grep -q '"event":"memory-warn"' "$T/hook.log" || fail "the hook did not receive the memory-warn event: $(cat "$T/hook.log" 2>/dev/null)"
grep -q '"event":"pressure"' "$T/hook.log" || fail "the hook did not receive the pressure event"
check_gone "$T/alerts.events" bot

# An abnormal exit reaches the hook; a clean one (above) did not.
grep -q '"event":"exit"' "$T/hook.log" && fail "a clean exit was sent to the hook"
cage bad --policy "$T/policy.toml" -- sh -c 'exit 3'
check_exit "$T/bad.events" "$rc" 3 exited
grep -q '"event":"exit".*"status":3' "$T/hook.log" || fail "the hook did not receive the abnormal exit: $(tail -n 2 "$T/hook.log")"
check_gone "$T/bad.events" bot
