# Exit status pass-through, the child's environment and cgroup, signals, 126/127.
# vmtest-timeout: 90

for s in 0 1 7 255; do
	cage st$s --name vm-basic -- sh -c "exit $s"
	check_exit "$T/st$s.events" "$rc" "$s" exited
	assert_eq "$(ev_field "$T/st$s.events" exit signal)" null "st$s: exit event signal"
	if [ "$s" = 0 ]; then check_no_line "$T/st$s.err"; else check_one_line "$T/st$s.err" "$T/st$s.events"; fi
	check_gone "$T/st$s.events" bot
done

# The child's view: CLAUDE_CAGE_ID, CLAUDE_CAGE_CGROUP, and it runs in <cage>/main.
cage env --name vm-basic -- sh -c 'echo "id=$CLAUDE_CAGE_ID"; echo "dir=$CLAUDE_CAGE_CGROUP"; echo "cg=$(cat /proc/self/cgroup)"'
check_exit "$T/env.events" "$rc" 0 exited
id=$(sed -n 's/^id=//p' "$T/env.out")
dir=$(sed -n 's/^dir=//p' "$T/env.out")
cg=$(sed -n 's/^cg=0:://p' "$T/env.out")
assert_eq "$id" "$(cage_id "$T/env.events")" "CLAUDE_CAGE_ID vs start event cage"
assert_eq "$dir" "$(cage_dir "$T/env.events")" "CLAUDE_CAGE_CGROUP vs start event cgroup"
assert_eq "$CG$cg" "$dir/main" "child's /proc/self/cgroup"
assert_eq "${dir##*/}" "$id" "cage dir name"
assert_eq "$(basename "${dir%/*}")" vm-basic "bot dir name"
echo "$id" | grep -qE '^vm-basic-[0-9]+-[0-9]+$' || fail "cage id '$id' is not <name>-<pid>-<n>"
assert_eq "$(ev_field "$T/env.events" start bot)" vm-basic "start event bot"
check_gone "$T/env.events" bot

# Killed by a signal: 128+N, reason signaled.
cage sig --name vm-basic -- sh -c 'kill -TERM $$'
check_exit "$T/sig.events" "$rc" 143 signaled
assert_eq "$(ev_field "$T/sig.events" exit signal)" 15 "sig: exit event signal"
check_one_line "$T/sig.err" "$T/sig.events"
check_gone "$T/sig.events" bot

# Missing program: 127, one line, nothing left.
cage missing --name vm-basic-missing -- /bin/no-such-program
assert_eq "$rc" 127 "missing program: exit status"
check_one_line "$T/missing.err" "$T/missing.events"
check_no_dir vm-basic-missing
if [ -s "$T/missing.events" ]; then assert_eq "$(ev_field "$T/missing.events" exit status)" 127 "missing: exit event status"; fi

# Not executable: 126, one line, nothing left.
printf '#!/bin/sh\nexit 0\n' >"$T/noexec"
chmod 644 "$T/noexec"
cage noexec --name vm-basic-noexec -- "$T/noexec"
assert_eq "$rc" 126 "non-executable program: exit status"
check_one_line "$T/noexec.err" "$T/noexec.events"
check_no_dir vm-basic-noexec
check_no_dir vm-basic
