# The SDK's close(): stdin (a pipe) is closed by every writer. A child that then ends by
# itself within stdin-eof-grace exits normally; one that does not is killed after the grace
# (124, reason stdin-closed).
# vmtest-timeout: 60

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-stdin"

[lifetime]
term-grace = "1s"
P
# ignores EOF: killed after the grace
: | claude-cage run --policy "$T/policy.toml" --stdin-eof-grace 1s --events "$T/deaf.events" \
	-- alloc 1 1000 >"$T/deaf.out" 2>"$T/deaf.err"
rc=$?
note "deaf: status $rc"
check_exit "$T/deaf.events" "$rc" 124 stdin-closed
check_one_line "$T/deaf.err" "$T/deaf.events"
check_no_proc alloc
check_gone "$T/deaf.events" bot

# reads to EOF and exits 0 by itself
printf 'hello\n' | claude-cage run --policy "$T/policy.toml" --stdin-eof-grace 10s --events "$T/polite.events" \
	-- sh -c 'cat >"$0"; exit 0' "$T/polite.got" >"$T/polite.out" 2>"$T/polite.err"
rc=$?
note "polite: status $rc"
check_exit "$T/polite.events" "$rc" 0 exited
assert_eq "$(cat "$T/polite.got")" hello "what the child read from stdin"
check_no_line "$T/polite.err"
check_gone "$T/polite.events" bot
