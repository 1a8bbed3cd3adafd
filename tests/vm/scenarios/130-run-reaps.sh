# `claude-cage run` reaps the orphans of its own bot before it starts its cage: a note on
# stderr, the orphan's grandchild is dead before the new child starts, the new run succeeds.
# An orphan of another bot is left alone (and reaped by `claude-cage reap` at the end).
# vmtest-timeout: 90

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-rr"

[pids]
max = 20
P
orphan o --policy "$T/policy.toml"
id=$ORPHAN_ID
dir=$ORPHAN_DIR
gc=$ORPHAN_GC
orphan x --name vm-rr-other
idx=$ORPHAN_ID
dirx=$ORPHAN_DIR
gcx=$ORPHAN_GC

# the new child reports whether the orphan's grandchild was still alive when it started
cage new --policy "$T/policy.toml" -- sh -c 's=$(sed -n "s/.*) \(.\).*/\1/p" /proc/$0/stat 2>/dev/null); if [ -n "$s" ] && [ "$s" != Z ]; then echo "orphan alive"; else echo "orphan gone"; fi' "$gc"
cat "$T/new.err" "$T/new.out"
check_exit "$T/new.events" "$rc" 0 exited
assert_eq "$(cat "$T/new.out")" "orphan gone" "the orphan's grandchild when the new child started"
assert_eq "$(grep -c '^claude-cage note: ' "$T/new.err")" 1 "run: note lines"
grep -qxF "claude-cage note: reaped orphaned cage $id: killed 1 process, removed $dir" "$T/new.err" ||
	fail "run: no 'reaped orphaned cage' note: $(cat "$T/new.err")"
check_no_line "$T/new.err"
alive "$gc" && fail "the orphan's grandchild $gc is still alive"
[ ! -e "$dir" ] || fail "the orphan's cage dir is left: $dir"
check_no_state "$id"
[ "$(cage_id "$T/new.events")" != "$id" ] || fail "the new run got the orphan's id"
check_gone "$T/new.events" bot

# the other bot's orphan is untouched
alive "$gcx" || fail "run of vm-rr killed the orphan of vm-rr-other"
[ -d "$dirx" ] || fail "run of vm-rr removed the orphan of vm-rr-other"
op ps ps --name vm-rr-other
assert_eq "$(ps_col "$T/ps.out" "$idx" STATE)" orphaned "the other bot's orphan"
op reap reap
assert_eq "$rc" 0 "reap: status"
assert_eq "$(cat "$T/reap.out")" "reaped orphaned cage $idx: killed 1 process, removed $dirx" "reap: stdout"
alive "$gcx" && fail "reap: the grandchild $gcx is still alive"
[ ! -e "${dirx%/*}" ] || fail "reap: bot dir left: ${dirx%/*}"
check_no_state "$idx"
check_no_proc alloc
