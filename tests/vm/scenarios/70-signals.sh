# The ends the incidents were about: claude-cage is SIGTERMed (reason terminated) or its parent
# dies (reason parent-died, parent-death = "kill"); either way the tree is killed and removed.
# vmtest-timeout: 90

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-sig"

[lifetime]
term-grace = "1s"
parent-death = "kill"
P
# SIGTERM to claude-cage
# (a tree of 20 whose top exits, and the child itself, still running)
cage_bg term --policy "$T/policy.toml" -- sh -c 'spawntree 20 && exec alloc 1 1000'
p=$!
wait_event "$T/term.events" start 20
wait_match "$T/term.out" touched 20
kill -TERM $p
wait $p
rc=$?
note "term: status $rc"
[ "$rc" != 0 ] || fail "term: claude-cage exited 0 after SIGTERM"
assert_eq "$(ev_field "$T/term.events" exit reason)" terminated "term: exit event reason"
assert_eq "$(ev_field "$T/term.events" exit status)" "$rc" "term: exit event status"
check_one_line "$T/term.err" "$T/term.events"
assert_ge "$(ev_field "$T/term.events" exit leftover)" 20 "term: exit event leftover"
check_no_proc spawntree
check_no_proc alloc
check_gone "$T/term.events" bot

# The parent of claude-cage is SIGKILLed: claude-cage notices and kills the cage.
sh -c 'claude-cage run --policy "$1/policy.toml" --events "$1/orphan.events" -- alloc 1 1000 >"$1/orphan.out" 2>"$1/orphan.err" & echo $! >"$1/orphan.pid"; wait' _ "$T" &
sp=$!
wait_event "$T/orphan.events" start 20
wait_match "$T/orphan.out" touched 20
cp=$(cat "$T/orphan.pid")
kill -KILL $sp
wait $sp
# claude-cage is no child of ours: wait for it to go
i=0
while [ -d /proc/$cp ] && [ "$(sed -n 's/.*) \(.\).*/\1/p' /proc/$cp/stat 2>/dev/null)" != Z ]; do
	i=$((i + 1))
	[ $i -le 200 ] || fail "orphaned claude-cage $cp still running 10 s after its parent died"
	sleep 0.05
done
assert_eq "$(ev_field "$T/orphan.events" exit reason)" parent-died "orphan: exit event reason"
check_no_proc alloc
check_gone "$T/orphan.events" bot
