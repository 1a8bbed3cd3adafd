# An OOM kill inside the cage, with and without memory.oom.group. The child (a shell) runs a
# sleeper and a 100 MB allocation under memory.max=50M.
# oom-group = false: the OOM killer takes the allocation alone; the child sees it die (137),
# finds the sleeper alive, and exits 0: status 0, reason exited, oom-kills exactly 1, no stderr
# line.
# oom-group = true: the OOM kill takes every process in the cage (the child, the sleeper, the
# allocation: oom-kills >= 3): status 137, reason oom-killed.
# vmtest-timeout: 120

policy() { # policy NAME OOM_GROUP
	cat >"$T/$1.toml" <<P
[cage]
name = "vm-oomgc-$1"

[memory]
max = "50M"
swap-max = "0"
oom-group = $2
P
}
child='sleep 1000 &
s=$!
alloc 100
echo "alloc=$?"
if kill -0 $s 2>/dev/null; then echo "sleeper=alive"; else echo "sleeper=dead"; fi
kill $s
exit 0'

policy solo false
cage solo --policy "$T/solo.toml" -- sh -c "$child"
cat "$T/solo.out"
check_exit "$T/solo.events" "$rc" 0 exited
grep -qx 'alloc=137' "$T/solo.out" || fail "solo: the allocation was not SIGKILLed: $(cat "$T/solo.out")"
grep -qx 'sleeper=alive' "$T/solo.out" || fail "solo: the sleeper did not survive the OOM kill of its sibling"
# One process allocates, so the kernel kills exactly one: the count is 1, not "some".
assert_eq "$(ev_field "$T/solo.events" exit oom-kills)" 1 "solo: exit event oom-kills"
assert_event "$T/solo.events" oom-kill
assert_eq "$(ev_field "$T/solo.events" oom-kill oom-kills)" 1 "solo: oom-kill event oom-kills"
assert_eq "$(ev_field "$T/solo.events" start oom-group)" false "solo: start limits oom-group"
check_no_line "$T/solo.err"
check_gone "$T/solo.events" bot

policy group true
cage group --policy "$T/group.toml" -- sh -c "$child"
cat "$T/group.out" "$T/group.err"
check_exit "$T/group.events" "$rc" 137 oom-killed
assert_eq "$(ev_field "$T/group.events" exit signal)" 9 "group: exit event signal"
grep -q 'alloc=' "$T/group.out" && fail "group: the child outlived the OOM kill: $(cat "$T/group.out")"
assert_ge "$(ev_field "$T/group.events" exit oom-kills)" 3 "group: exit event oom-kills (child, sleeper, allocation)"
assert_eq "$(ev_field "$T/group.events" start oom-group)" true "group: start limits oom-group"
check_one_line "$T/group.err" "$T/group.events" 'OOM killer at memory.max'
check_gone "$T/group.events" bot
check_no_proc alloc
