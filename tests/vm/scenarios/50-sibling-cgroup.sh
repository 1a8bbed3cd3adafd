# What Claude Code does: the child creates $CLAUDE_CAGE_CGROUP/claude-code-bash beside its own
# cgroup and moves tool processes there. They stay under the cage's memory.max (a hog is
# OOM-killed and counted in the exit event), and die with the cage (a sleeper left there is
# killed, the dir removed).
# vmtest-timeout: 90

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-sib"

[memory]
max = "50M"
swap-max = "0"
oom-group = false
P
cat >"$T/child.sh" <<'C'
sib=$CLAUDE_CAGE_CGROUP/claude-code-bash
mkdir "$sib" || exit 10
# a sleeper in the sibling, left behind on purpose
sh -c 'echo $$ >"$1/cgroup.procs" && exec alloc 1 1000' _ "$sib" &
i=0
until grep -q 'populated 1' "$sib/cgroup.events"; do
	i=$((i + 1)); [ $i -le 200 ] || exit 11; sleep 0.05
done
# a hog in the sibling
sh -c 'echo $$ >"$1/cgroup.procs" && exec alloc 100' _ "$sib"
echo "hog=$?"
echo "sibling-procs=$(wc -l <"$sib/cgroup.procs")"
echo "main-procs=$(wc -l <"$CLAUDE_CAGE_CGROUP/main/cgroup.procs")"
exit 0
C
cage sib --policy "$T/policy.toml" -- sh "$T/child.sh"
cat "$T/sib.out"
check_exit "$T/sib.events" "$rc" 0 exited
grep -q '^hog=137$' "$T/sib.out" || fail "the hog in claude-code-bash was not SIGKILLed: $(grep hog= "$T/sib.out")"
grep -q '^sibling-procs=1$' "$T/sib.out" || fail "the sleeper was not alone in claude-code-bash: $(grep sibling-procs "$T/sib.out")"
assert_ge "$(ev_field "$T/sib.events" exit oom-kills)" 1 "exit event oom-kills"
assert_eq "$(ev_field "$T/sib.events" exit oom-limit)" cage "exit event oom-limit"
assert_event "$T/sib.events" oom-kill
assert_ge "$(ev_field "$T/sib.events" exit leftover)" 1 "exit event leftover (the sleeper)"
d=$(cage_dir "$T/sib.events")
[ ! -e "$d/claude-code-bash" ] || fail "claude-code-bash left: $d/claude-code-bash"
check_gone "$T/sib.events" bot
check_no_proc alloc
