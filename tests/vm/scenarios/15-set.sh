# `claude-cage set` on live cages: lowering a cage's memory.max below what its child holds gets
# the child OOM-killed (the control); raising another's lets an allocation its policy would have
# killed finish; each supervisor writes a limits-changed event with the new limits. A bad value,
# and a memory.high above the cage's memory.max, are refused with 125 and change nothing.
# vmtest-timeout: 90

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-set"

[memory]
max = "100M"
swap-max = "0"
P
# a: holds 60 MB
cage_bg a --policy "$T/policy.toml" -- alloc 60 1000
pa=$!
wait_match "$T/a.out" touched 30
ida=$(cage_id "$T/a.events")
# b: allocates 150 MB once told to (a line on its FIFO)
mkfifo "$T/go"
cage_bg b --policy "$T/policy.toml" -- sh -c 'read -r _ <"$0"; exec alloc 150' "$T/go"
pb=$!
wait_event "$T/b.events" start 20
idb=$(cage_id "$T/b.events")
dirb=$(cage_dir "$T/b.events")

# refused: nothing changes
op bad set "$idb" --memory-max lots
assert_eq "$rc" 125 "set --memory-max lots: status"
grep -q -- '--memory-max: bad size "lots"' "$T/bad.err" || fail "set --memory-max lots: $(cat "$T/bad.err")"
op above set "$idb" --memory-high 300M
assert_eq "$rc" 125 "set --memory-high above memory.max: status"
grep -q "memory.high 300.0 MiB would be above memory.max 100.0 MiB" "$T/above.err" || fail "set --memory-high 300M: $(cat "$T/above.err")"
assert_eq "$(cat "$dirb/memory.max")" 104857600 "b's memory.max after the refused sets"
assert_eq "$(cat "$dirb/memory.high")" max "b's memory.high after the refused sets"
assert_no_event "$T/b.events" limits-changed

# raise b, then let it allocate: it lives
op raise set "$idb" --memory-max 200M
assert_eq "$rc" 0 "set --memory-max 200M: status ($(cat "$T/raise.err"))"
wait_event "$T/b.events" limits-changed 10
assert_eq "$(ev_lines "$T/b.events" limits-changed | tail -n 1 | sed -n 's/.*"memory-max":\([0-9]*\).*/\1/p')" 209715200 "b's limits-changed memory-max"
echo go >"$T/go"
wait "$pb"
check_exit "$T/b.events" "$?" 0 exited
grep -q 'touched 150 MB' "$T/b.out" || fail "b's allocation did not finish"

# lower a below what it holds: it is OOM-killed (while memory.max is written, so its supervisor
# may have ended before it is told: no limits-changed event is required of it)
op lower set "$ida" --memory-max 30M
assert_eq "$rc" 0 "set --memory-max 30M: status ($(cat "$T/lower.err"))"
wait "$pa"
check_exit "$T/a.events" "$?" 137 oom-killed
# The line names the limit the cage had at its end, the one set wrote, not the policy's.
check_one_line "$T/a.err" "$T/a.events" 'killed by the kernel OOM killer at memory\.max 30\.0 MiB '
check_gone "$T/a.events" bot
