# [bot] max-cages = 2 on the VM's kernel: 20 concurrent runs never have more than 2 live cages
# (sampled all along) and all of them run in the end (on-limit = "wait"); "refuse" exits 125 at
# once with the line; a cage whose supervisor was SIGKILLed holds no slot: the next run reaps it
# and starts.
# vmtest-timeout: 150

cat >"$T/wait.toml" <<'P'
[cage]
name = "vm-cap"

[bot]
max-cages = 2
wait-timeout = "120s"
P
bot=$CG/vm-cap
# sample: the most cages the bot's cgroup held at once, until $T/done appears
(
	most=0
	while [ ! -e "$T/done" ]; do
		n=$(find "$bot" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
		[ "$n" -gt "$most" ] && most=$n
		echo "$most" >"$T/most"
		sleep 0.02
	done
) &
sampler=$!
pids=
i=0
while [ $i -lt 20 ]; do
	i=$((i + 1))
	claude-cage run --policy "$T/wait.toml" --events "$T/w$i.events" -- sleep 0.3 >/dev/null 2>"$T/w$i.err" &
	pids="$pids $!"
done
bad=0
for p in $pids; do
	wait "$p" || bad=$((bad + 1))
done
touch "$T/done"
wait "$sampler"
note "20 runs under max-cages 2: $bad failed, at most $(cat "$T/most") cages at once"
assert_eq "$bad" 0 "runs that did not exit 0 (first error: $(cat "$T"/w*.err | head -n 1))"
assert_le "$(cat "$T/most")" 2 "the most live cages at once"
assert_eq "$(cat "$T/most")" 2 "the most live cages at once (the cap was reached)"
[ ! -e "$bot" ] || fail "the bot's cgroup is left"

# refuse: at once, with the line
cat >"$T/refuse.toml" <<'P'
[cage]
name = "vm-cap"

[bot]
max-cages = 1
on-limit = "refuse"
P
cage_bg hold --policy "$T/refuse.toml" -- sh -c 'setsid sleep 1000 & exec sleep 1000'
hold=$!
wait_event "$T/hold.events" start 20
id=$(cage_id "$T/hold.events")
t0=$(now)
cage refused --policy "$T/refuse.toml" -- true
assert_eq "$rc" 125 "a run at the cap with on-limit = refuse"
awk -v t="$(since "$t0")" 'BEGIN { exit !(t < 2) }' || fail "refuse was not at once"
grep -qx "claude-cage: bot vm-cap has 1 live cages, its \[bot\] max-cages (1): $id; refused (on-limit = \"refuse\")" "$T/refused.err" ||
	fail "the refusal line: $(cat "$T/refused.err")"

# a dead supervisor holds no slot: its orphaned cage (the setsid sleep lives on) is reaped by
# the next run, which then starts
kill -KILL "$hold"
wait "$hold"
[ -d "$(cage_dir "$T/hold.events")" ] || fail "the orphaned cage is already gone"
cage after --policy "$T/refuse.toml" -- true
check_exit "$T/after.events" "$rc" 0 exited
grep -q "reaped orphaned cage $id" "$T/after.err" || fail "the next run did not reap the orphan: $(cat "$T/after.err")"
check_gone "$T/after.events" bot
check_no_proc sleep
