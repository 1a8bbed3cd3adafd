# Who ate the memory: a cage with a hog (alloc 200) and a bystander (alloc 20) under
# memory.high 140M and memory.max 150M. The hog is throttled above 140M, reaches memory.max and
# is OOM-killed (oom-group: the whole cage). The memory-high event and the exit event carry a
# snapshot whose largest process is the hog, with the bystander second; the line names it
# ("largest: alloc ..."). The hog's resident memory in the exit snapshot is within 10% of what
# the kernel's OOM killer found it holding (its "Killed process" line in dmesg, by pid). The
# control: a cage that never nears its limits takes no snapshot.
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
dmesg_before=$(dmesg | wc -l)
cage hog --policy "$T/policy.toml" -- sh -c 'alloc 20 600 | { read -r _; alloc 200; }'
check_exit "$T/hog.events" "$rc" 137 oom-killed
# top FILE EVENT N FIELD: FIELD (pid, comm, command, rss) of the Nth (0 or 1) process of the last
# EVENT's snapshot (serde writes pid, comm, command, rss in that order)
top() {
	local skip='' f
	[ "$3" = 1 ] && skip='{[^}]*},'
	case $4 in pid) f=1 ;; comm) f=2 ;; command) f=3 ;; rss) f=4 ;; esac
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
# What the hog held when the kernel killed it: anon-rss + file-rss + shmem-rss of its pid's
# "Killed process" line.
pid=$(top "$T/hog.events" exit 0 pid)
killed=$(dmesg | tail -n +"$((dmesg_before + 1))" | grep "Killed process $pid (alloc)" | head -n 1)
[ -n "$killed" ] || fail "no 'Killed process $pid (alloc)' in dmesg: $(dmesg | tail -n +"$((dmesg_before + 1))" | grep 'Killed process' | head -n 3)"
held=$(echo "$killed" | sed -E 's/.*anon-rss:([0-9]+)kB, file-rss:([0-9]+)kB, shmem-rss:([0-9]+)kB.*/\1 \2 \3/' | awk '{ print ($1 + $2 + $3) * 1024 }')
assert_num "$held" "the hog's rss in dmesg ($killed)"
diff=$((rss > held ? rss - held : held - rss))
[ $((diff * 10)) -le "$held" ] || fail "exit snapshot: the hog's rss $rss is not within 10% of the $held bytes the OOM killer found ($killed)"
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
