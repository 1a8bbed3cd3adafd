# Who ate the memory: a cage with a hog (alloc 200) and a bystander (alloc 20) under
# memory.high 140M and memory.max 150M. The hog is throttled above 140M, reaches memory.max and
# is OOM-killed (oom-group: the whole cage). The memory-high event and the exit event carry a
# snapshot whose largest process is the hog, above 100 MiB and below 150 MiB, with the
# bystander second; the line names it ("largest: alloc ..."). The control: a cage that never
# nears its limits takes no snapshot.
# vmtest-timeout: 120

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-who"

[memory]
high = "140M"
max = "150M"
swap-max = "0"
oom-group = true
P
# The hog starts once the bystander's 20 MB are resident (alloc says so on stdout).
cage hog --policy "$T/policy.toml" -- sh -c 'alloc 20 600 | { read -r _; alloc 200; }'
check_exit "$T/hog.events" "$rc" 137 oom-killed
# top FILE EVENT N FIELD: FIELD (comm, command, rss) of the Nth (0 or 1) process of the last
# EVENT's snapshot (serde writes pid, comm, command, rss in that order)
top() {
	local skip='' f
	[ "$3" = 1 ] && skip='{[^}]*},'
	case $4 in comm) f=2 ;; command) f=3 ;; rss) f=4 ;; esac
	ev_lines "$1" "$2" | tail -n 1 |
		sed -n "s/.*\"top\":\[$skip{\"pid\":\([0-9]*\),\"comm\":\"\([^\"]*\)\",\"command\":\"\([^\"]*\)\",\"rss\":\([0-9]*\).*/\\$f/p"
}
assert_event "$T/hog.events" memory-high
assert_eq "$(top "$T/hog.events" memory-high 0 comm)" alloc "memory-high snapshot: the largest process"
assert_eq "$(top "$T/hog.events" exit 0 comm)" alloc "exit snapshot: the largest process"
assert_eq "$(top "$T/hog.events" exit 0 command)" "alloc 200" "exit snapshot: the hog's command"
assert_eq "$(top "$T/hog.events" exit 1 command)" "alloc 20 600" "exit snapshot: the bystander second"
rss=$(top "$T/hog.events" exit 0 rss)
assert_ge "$rss" $((100 * 1048576)) "exit snapshot: the hog's rss"
assert_le "$rss" $((150 * 1048576)) "exit snapshot: the hog's rss"
by=$(top "$T/hog.events" exit 1 rss)
assert_ge "$by" $((18 * 1048576)) "exit snapshot: the bystander's rss"
assert_le "$by" $((22 * 1048576)) "exit snapshot: the bystander's rss"
check_one_line "$T/hog.err" "$T/hog.events" \
	"killed by the kernel OOM killer at memory\.max 150\.0 MiB \(peak [0-9.]+ MiB\) after [0-9.ms]+; largest: alloc 1[0-4][0-9]\.[0-9] MiB \(pid [0-9]+, alloc 200\), alloc (1[89]|2[0-2])\.[0-9] MiB$"
check_gone "$T/hog.events" bot

# The control: far from its limits, no snapshot anywhere.
cage calm --policy "$T/policy.toml" -- alloc 10
check_exit "$T/calm.events" "$rc" 0 exited
grep -q '"snapshot"' "$T/calm.events" && fail "a calm cage took a snapshot: $(grep -m 1 snapshot "$T/calm.events")"
check_gone "$T/calm.events" bot
