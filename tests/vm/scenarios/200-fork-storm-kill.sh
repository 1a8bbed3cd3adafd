# Kill during a fork storm. Under a generous pids.max (4000), 8 workers fork in a tight loop,
# each child orphaning a grandchild onto claude-cage (the subreaper):
# (1) `claude-cage kill` ends the cage; (2) max-runtime ends it. The storm is proven running at
# the kill (the kernel's last pid keeps moving); `run` returns within 10 s of the kill; the
# exit event's duration matches; nothing is left: no process, no zombie, no cgroup, no state.
# (3) An exponential fork bomb held at pids.max=1000 (1000 processes retrying fork() every
# 10 ms; it reaches the limit within the 10 s max-runtime, a pids-max event shows it) ended
# by max-runtime: the same clean-up checks, with a 15 s bound (emulation is slow
# under a thousand forking processes). The cpu controller is on for every cage, so the kernel
# schedules the bomb as one group and the supervisor gets its share; before it was (only with a
# cpu key), the supervisor was one task among a thousand and this kill came 0.3 to 88 s after
# max-runtime on this 2-vCPU emulated VM (docs/reliability.md).
# vmtest-timeout: 300

BOUND=10
lastpid() { cut -d' ' -f5 /proc/loadavg; }
pid_max=$(cat /proc/sys/kernel/pid_max)
# forks_during SECONDS: how many pids the kernel handed out meanwhile (pid_max wraps)
forks_during() {
	_a=$(lastpid)
	sleep "$1"
	_b=$(lastpid)
	echo $(((_b - _a + pid_max) % pid_max))
}
# elapsed T0 [T1]: seconds since T0 (uptime) as a decimal
elapsed() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN{printf "%.2f", b-a}'; }
# le A B: A <= B for decimals
le() { awk -v a="$1" -v b="$2" 'BEGIN{exit !(a <= b)}'; }
zombies_of() { # zombies_of COMM: zombies whose comm is COMM
	for _p in /proc/[0-9]*; do
		[ "$(cat "$_p/comm" 2>/dev/null)" = "$1" ] || continue
		[ "$(sed -n 's/.*) \(.\).*/\1/p' "$_p/stat" 2>/dev/null)" = Z ] && echo "${_p#/proc/}"
	done
}

cat >"$T/storm.toml" <<'P'
[cage]
name = "vm-storm"

[pids]
max = 4000

[lifetime]
term-grace = "1s"
P

# (1) `claude-cage kill` in the middle of an orphaning fork storm
ts=$(now)
cage_bg storm --policy "$T/storm.toml" -- forkstorm 8 orphans
p=$!
wait_event "$T/storm.events" start 30
wait_match "$T/storm.out" 'forkstorm: 8 workers' 30
id=$(cage_id "$T/storm.events")
dir=$(cage_dir "$T/storm.events")
rate=$(forks_during 1)
note "storm: $rate pids handed out in 1 s before the kill; pids.current $(cat "$dir/pids.current")"
assert_ge "$rate" 50 "storm: forks per second before the kill (is the storm running?)"
t0=$(now)
op k kill "$id"
k_rc=$rc
wait $p
rc=$?
took=$(elapsed "$t0")
note "storm: kill status $k_rc; run returned $took s after the kill"
assert_eq "$k_rc" 0 "kill $id: status"
assert_eq "$(cat "$T/k.out")" "killed cage $id" "kill $id: stdout"
le "$took" "$BOUND" || fail "storm: run returned $took s after the kill (bound $BOUND s)"
check_exit "$T/storm.events" "$rc" 137 killed
check_one_line "$T/storm.err" "$T/storm.events" 'killed by an operator'
assert_ge "$(ev_field "$T/storm.events" exit leftover)" 8 "storm: exit event leftover (8 workers at least)"
ms=$(ev_field "$T/storm.events" exit duration-ms)
life_ms=$(awk -v a="$ts" -v b="$(now)" 'BEGIN{printf "%d", (b-a)*1000}')
assert_ge "$ms" 1000 "storm: exit event duration-ms (the storm ran 1 s before the kill)"
[ "$ms" -le "$life_ms" ] || fail "storm: exit event duration-ms $ms is longer than the run itself ($life_ms ms)"
check_gone "$T/storm.events" bot
check_no_state "$id"
check_no_proc forkstorm
z=$(zombies_of forkstorm | tr '\n' ' ')
[ -z "$z" ] || fail "storm: forkstorm zombies left: $z"

# (2) max-runtime ends the same storm
cat >"$T/rt.toml" <<'P'
[cage]
name = "vm-storm-rt"

[pids]
max = 4000

[lifetime]
max-runtime = "4s"
term-grace = "1s"
P
ts=$(now)
cage_bg rt --policy "$T/rt.toml" -- forkstorm 8 orphans
p=$!
wait_event "$T/rt.events" start 30
wait_match "$T/rt.out" 'forkstorm: 8 workers' 30
rate=$(forks_during 1)
note "rt: $rate pids handed out in 1 s"
assert_ge "$rate" 50 "rt: forks per second (is the storm running?)"
wait $p
rc=$?
total=$(elapsed "$ts")
ms=$(ev_field "$T/rt.events" exit duration-ms)
note "rt: run took $total s, duration-ms $ms, for max-runtime 4 s"
check_exit "$T/rt.events" "$rc" 124 timeout
check_one_line "$T/rt.err" "$T/rt.events" 'max-runtime'
assert_ge "$ms" 4000 "rt: exit event duration-ms"
[ "$ms" -le $((4000 + BOUND * 1000)) ] || fail "rt: exit event duration-ms $ms: the cage ended more than $BOUND s after max-runtime"
le "$total" $((4 + BOUND)) || fail "rt: run returned $total s after it started: more than $BOUND s after max-runtime 4 s"
assert_ge "$(ev_field "$T/rt.events" exit leftover)" 8 "rt: exit event leftover"
check_gone "$T/rt.events" bot
check_no_proc forkstorm
z=$(zombies_of forkstorm | tr '\n' ' ')
[ -z "$z" ] || fail "rt: forkstorm zombies left: $z"

# (3) max-runtime ends an exponential fork bomb held at pids.max=1000
BOMB_BOUND=15
cat >"$T/bomb.toml" <<'P'
[cage]
name = "vm-storm-bomb"

[pids]
max = 1000

[lifetime]
max-runtime = "10s"
term-grace = "1s"
P
ts=$(now)
cage_bg bomb --policy "$T/bomb.toml" -- forkbomb
p=$!
wait_event "$T/bomb.events" start 30
wait_event "$T/bomb.events" pids-max 30
wait $p
rc=$?
total=$(elapsed "$ts")
ms=$(ev_field "$T/bomb.events" exit duration-ms)
note "bomb: run took $total s, duration-ms $ms ($((ms - 10000)) ms after max-runtime 10 s)"
check_exit "$T/bomb.events" "$rc" 124 timeout
check_one_line "$T/bomb.err" "$T/bomb.events" 'max-runtime'
assert_ge "$ms" 10000 "bomb: exit event duration-ms"
[ "$ms" -le $((10000 + BOMB_BOUND * 1000)) ] || fail "bomb: exit event duration-ms $ms: the kill came more than $BOMB_BOUND s after max-runtime"
le "$total" $((10 + BOMB_BOUND)) || fail "bomb: run took $total s (max-runtime 10 s + bound $BOMB_BOUND s)"
assert_ge "$(ev_field "$T/bomb.events" exit leftover)" 500 "bomb: exit event leftover"
check_gone "$T/bomb.events" bot
check_no_proc forkbomb
z=$(zombies_of forkbomb | tr '\n' ' ')
[ -z "$z" ] || fail "bomb: forkbomb zombies left: $z"
