# An OOM kill enforced by neither the cage's memory.max nor the bot's: the bots' parent cgroup
# (`[cage] parent`) has memory.max 40M, the cage none. The child is "oom-killed", its exit event
# says oom-limit "outside" and the line says the limit was outside the cage's; a cage under its
# own memory.max in the same parent is the control ("cage").
# vmtest-timeout: 60

encl=$CG/vm-encl
mkdir "$encl"
echo "+memory" >"$CG/cgroup.subtree_control"
echo "+memory +pids" >"$encl/cgroup.subtree_control"
echo 40M >"$encl/memory.max"
echo 0 >"$encl/memory.swap.max" 2>/dev/null
for which in outside cage; do
	max=
	[ "$which" = cage ] && max='max = "20M"'
	cat >"$T/$which.toml" <<P
[cage]
name = "vm-outside"
parent = "/vm-encl"

[memory]
$max
swap-max = "0"
P
	cage "$which" --policy "$T/$which.toml" -- alloc 100
	check_exit "$T/$which.events" "$rc" 137 oom-killed
	assert_eq "$(ev_field "$T/$which.events" exit oom-limit)" "$which" "$which: exit event oom-limit"
	check_gone "$T/$which.events" bot
done
check_one_line "$T/outside.err" "$T/outside.events" \
	"killed by the kernel OOM killer outside the cage's limits \(the host or an enclosing cgroup ran out of memory\)"
check_one_line "$T/cage.err" "$T/cage.events" "killed by the kernel OOM killer at memory\.max 20\.0 MiB"
rmdir "$encl"
