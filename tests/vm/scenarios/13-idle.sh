# idle-timeout on the VM's kernel: a sleeping child under idle-timeout 3s is killed with reason
# idle (124) within the window plus a bound; a CPU-busy child and one that works a few percent of
# the time in bursts are not (max-runtime ends them: timeout). With the key unset, the
# supervisor of a sleeping child does not wake once in 30 s; with it (the control), it does.
# vmtest-timeout: 150

cat >"$T/idle.toml" <<'P'
[cage]
name = "vm-idle"

[lifetime]
idle-timeout = "3s"
max-runtime = "60s"
P
t0=$(now)
cage idle --policy "$T/idle.toml" -- sh -c 'setsid sleep 1000 & exec sleep 1000'
took=$(since "$t0")
check_exit "$T/idle.events" "$rc" 124 idle
check_one_line "$T/idle.err" "$T/idle.events" 'idle for [0-9.]+s \(CPU [0-9.]+% of one CPU, below idle-cpu 0\.5%\); killed the cage after [0-9.]+s; killed 1 leftover process$'
awk -v t="$took" 'BEGIN { exit !(t >= 3 && t < 10) }' || fail "the idle cage was killed after ${took}s, not within 3 s plus a bound"
check_gone "$T/idle.events" bot

cat >"$T/busy.toml" <<'P'
[cage]
name = "vm-idle"

[lifetime]
idle-timeout = "2s"
max-runtime = "6s"
P
cage busy --policy "$T/busy.toml" -- sh -c 'while :; do :; done'
check_exit "$T/busy.events" "$rc" 124 timeout
# a little work, then a second of sleep: some percent of a CPU, well above idle-cpu (0.5%)
cage bursty --policy "$T/busy.toml" -- sh -c 'while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 1; done'
check_exit "$T/bursty.events" "$rc" 124 timeout
check_gone "$T/bursty.events" bot

# switches PID: the process's voluntary and involuntary context switches, added up
switches() { awk '/ctxt_switches/ { s += $2 } END { print s }' "/proc/$1/status"; }
cat >"$T/quiet.toml" <<'P'
[cage]
name = "vm-idle"
P
for key in unset set; do
	[ "$key" = set ] && printf '[lifetime]\nidle-timeout = "10s"\n' >>"$T/quiet.toml"
	cage_bg "quiet-$key" --policy "$T/quiet.toml" -- sleep 1000
	sup=$!
	wait_event "$T/quiet-$key.events" start 20
	# from when the supervisor waits in its poll loop (it writes the start event before)
	wait_for 10 "the supervisor waits in poll" grep -q poll "/proc/$sup/wchan"
	a=$(switches "$sup")
	sleep $([ "$key" = unset ] && echo 30 || echo 5)
	b=$(switches "$sup")
	kill -TERM "$sup"
	wait "$sup"
	note "idle-timeout $key: context switches $a -> $b"
	if [ "$key" = unset ]; then
		assert_eq "$b" "$a" "the supervisor's context switches over 30 s without idle-timeout"
	else
		[ "$b" -gt "$a" ] || fail "the control: with idle-timeout the supervisor did not wake ($a -> $b)"
	fi
	check_gone "$T/quiet-$key.events" bot
done
