# A tree of 500 processes (setsid'd, double-forked orphans, stopped ones) whose top exits:
# claude-cage kills them all, reports them as leftover, removes the cage and the bot dir.
# vmtest-timeout: 150

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-tree"

[pids]
max = 1000
P
cage tree --policy "$T/policy.toml" -- spawntree 500
grep -q 'spawntree: 500 ready' "$T/tree.out" || fail "spawntree did not set up its 500 processes: $(cat "$T/tree.out" "$T/tree.err" | head -n 3)"
check_exit "$T/tree.events" "$rc" 0 exited
assert_ge "$(ev_field "$T/tree.events" exit leftover)" 499 "exit event leftover"
check_no_proc spawntree
check_gone "$T/tree.events" bot
