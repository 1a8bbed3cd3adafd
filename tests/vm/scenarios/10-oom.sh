# 100 MB under memory.max=50M is OOM-killed (137, reason oom-killed, one stderr line naming
# the OOM killer, the limit and the peak); a second cage of the same bot started at the same time is untouched.
# vmtest-timeout: 90

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-oom"

[memory]
max = "50M"
swap-max = "0"
oom-group = true
P
cage_bg big --policy "$T/policy.toml" -- alloc 100
pb=$!
cage_bg small --policy "$T/policy.toml" -- alloc 10 2
ps=$!
wait $pb
rcb=$?
wait $ps
rcs=$?
note "big: $rcb, small: $rcs"

check_exit "$T/big.events" "$rcb" 137 oom-killed
assert_eq "$(ev_field "$T/big.events" exit signal)" 9 "big: exit event signal"
assert_ge "$(ev_field "$T/big.events" exit oom-kills)" 1 "big: exit event oom-kills"
assert_eq "$(ev_field "$T/big.events" exit oom-limit)" cage "big: exit event oom-limit"
assert_event "$T/big.events" oom-kill
assert_ge "$(ev_field "$T/big.events" oom-kill oom-kills)" 1 "big: oom-kill event oom-kills"
assert_eq "$(ev_field "$T/big.events" start memory-max)" 52428800 "big: start limits memory-max"
assert_eq "$(ev_field "$T/big.events" start swap-max)" 0 "big: start limits swap-max"
assert_eq "$(ev_field "$T/big.events" start oom-group)" true "big: start limits oom-group"
peak=$(ev_field "$T/big.events" exit memory-peak)
assert_ge "$peak" $((40 * 1048576)) "big: exit event memory-peak"
[ "$peak" -le $((50 * 1048576)) ] || fail "big: memory-peak $peak above memory.max"
# The whole line: the limit as the policy set it, then the peak and the duration as
# claude-cage formats them (units.rs: one decimal and a binary unit; "850ms" or "1.2s"), then,
# when the snapshot at memory.max came before the kill, the largest process: the hog.
check_one_line "$T/big.err" "$T/big.events" \
	'killed by the kernel OOM killer at memory\.max 50\.0 MiB \(peak [0-9]+\.[0-9] (KiB|MiB)\) after ([0-9]+ms|[0-9]+\.[0-9]s)(; largest: alloc [0-9]+\.[0-9] MiB \(pid [0-9]+, alloc 100\))?$'
# ... and the peak it names is the exit event's memory-peak.
lpeak=$(cage_lines "$T/big.err" | sed -n 's/.*(peak \([0-9.]*\) MiB).*/\1/p')
awk -v l="$lpeak" -v p="$peak" 'BEGIN { d = l - p / 1048576; exit !(l != "" && d < 0.051 && d > -0.051) }' ||
	fail "big: the line's peak '$lpeak MiB' is not the exit event's memory-peak $peak"
grep -q 'touched' "$T/big.out" && fail "big: alloc finished, it should have been killed"

check_exit "$T/small.events" "$rcs" 0 exited
assert_eq "$(ev_field "$T/small.events" exit oom-kills)" 0 "small: exit event oom-kills"
assert_eq "$(ev_field "$T/small.events" exit oom-limit)" null "small: exit event oom-limit"
assert_no_event "$T/small.events" oom-kill
grep -q 'alloc: touched 10 MB' "$T/small.out" || fail "small: alloc did not finish"
check_no_line "$T/small.err"
[ "$(cage_dir "$T/big.events")" != "$(cage_dir "$T/small.events")" ] || fail "both cages got the same cgroup"

check_gone "$T/big.events"
check_gone "$T/small.events" bot
check_no_proc alloc
