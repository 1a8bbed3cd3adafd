# No false OOM with the memory controller on. A child SIGKILLed from outside is "signaled", not
# "oom-killed" (oom-kills 0, no oom-kill event), whether its cage is far from or close to
# memory.max. With memory.high alone (no memory.max) an allocation 25% over it is throttled
# (memory-high event, memory.events high > 0) and never killed: memory.events oom and oom_kill
# stay 0 while it holds the memory; a kill -9 then is "signaled" too.
# vmtest-timeout: 150

cat >"$T/max.toml" <<'P'
[cage]
name = "vm-nofalse"

[memory]
max = "50M"
swap-max = "0"
P
# kill9 TAG MB POLICY: a child holding MB megabytes is SIGKILLed from outside
kill9() {
	cage_bg "$1" --policy "$3" -- alloc "$2" 1000
	_p=$!
	wait_event "$T/$1.events" start 20
	wait_match "$T/$1.out" touched 60
	_c=$(ev_field "$T/$1.events" start pid)
	_d=$(cage_dir "$T/$1.events")
	note "$1: memory.current $(cat "$_d/memory.current") before kill -9 of $_c; memory.events: $(tr '\n' ' ' <"$_d/memory.events")"
	kill -KILL "$_c"
	wait $_p
	rc=$?
	check_exit "$T/$1.events" "$rc" 137 signaled
	assert_eq "$(ev_field "$T/$1.events" exit signal)" 9 "$1: exit event signal"
	assert_eq "$(ev_field "$T/$1.events" exit oom-kills)" 0 "$1: exit event oom-kills"
	assert_no_event "$T/$1.events" oom-kill
	check_one_line "$T/$1.err" "$T/$1.events" 'killed by SIGKILL \(137\)'
	cage_lines "$T/$1.err" | grep -qi oom && fail "$1: the line mentions OOM: $(cage_lines "$T/$1.err")"
	check_gone "$T/$1.events" bot
}
kill9 far 4 "$T/max.toml"
kill9 near 40 "$T/max.toml"

cat >"$T/high.toml" <<'P'
[cage]
name = "vm-nofalse-high"

[memory]
high = "32M"
P
cage_bg high --policy "$T/high.toml" -- alloc 40 1000
p=$!
wait_event "$T/high.events" start 20
wait_match "$T/high.out" 'touched 40 MB' 120
wait_event "$T/high.events" memory-high 20
d=$(cage_dir "$T/high.events")
ev=$(tr '\n' ' ' <"$d/memory.events")
note "high: memory.current $(cat "$d/memory.current"), memory.events: $ev"
assert_eq "$(cat "$d/memory.max")" max "high: memory.max of the cage"
assert_ge "$(grep '^high ' "$d/memory.events" | cut -d' ' -f2)" 1 "high: memory.events high"
assert_eq "$(grep '^oom ' "$d/memory.events" | cut -d' ' -f2)" 0 "high: memory.events oom"
assert_eq "$(grep '^oom_kill ' "$d/memory.events" | cut -d' ' -f2)" 0 "high: memory.events oom_kill"
c=$(ev_field "$T/high.events" start pid)
alive "$c" || fail "high: the throttled child is not alive"
kill -KILL "$c"
wait $p
rc=$?
check_exit "$T/high.events" "$rc" 137 signaled
assert_eq "$(ev_field "$T/high.events" exit oom-kills)" 0 "high: exit event oom-kills"
assert_no_event "$T/high.events" oom-kill
peak=$(ev_field "$T/high.events" exit memory-peak)
assert_ge "$peak" $((33 * 1048576)) "high: memory-peak (an overshoot above memory.high 32M)"
check_gone "$T/high.events" bot
