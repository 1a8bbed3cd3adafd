# Zombies: a child that forks 100 short-lived processes and never waits for them. Run under a
# child subreaper that counts what is reparented to it once its command ended:
# - negative control, without claude-cage: the 100 zombies land on the subreaper;
# - under claude-cage (itself a child subreaper): none do, no zombie is left anywhere, and the
#   pids charge is gone: the cages sit under a parent cgroup made here, whose pids.current is
#   back to 0 once `run` returns; the cage and the bot's cgroup are removed.
# Both with the C payload (zombies held until it exits) and with the shell loop
# `for i in $(seq 100); do true & done; exec sleep 2`.
# vmtest-timeout: 120

P=$CG/vm-zomb-parent
echo "+pids" >"$CG/cgroup.subtree_control" || fail "cannot enable pids in the root"
mkdir "$P" || fail "mkdir $P"
trap 'rmdir "$P" 2>/dev/null' EXIT

zombie_count() {
	_n=0
	for _p in /proc/[0-9]*; do
		[ "$(sed -n 's/.*) \(.\).*/\1/p' "$_p/stat" 2>/dev/null)" = Z ] && _n=$((_n + 1))
	done
	echo $_n
}

# negative control: without claude-cage the zombies are inherited by the subreaper
subreaper zombies 100 0 >"$T/ctl.out" 2>&1
cat "$T/ctl.out"
grep -q 'zombies: 100 ready' "$T/ctl.out" || fail "control: the payload did not make its zombies"
grep -q 'inherited 100 zombies and 0 live' "$T/ctl.out" || fail "control: expected the subreaper to inherit 100 zombies: $(tail -n 1 "$T/ctl.out")"

# under claude-cage: the payload holds its 100 zombies for 2 s, then exits without reaping
subreaper claude-cage run --parent /vm-zomb-parent --name vm-zomb --events "$T/c.events" \
	-- sh -c 'zombies 100 2 >"$0"' "$T/c.payload" >"$T/c.out" 2>"$T/c.err" &
sp=$!
wait_match "$T/c.payload" 'zombies: 100 ready' 30
d=$(cage_dir "$T/c.events")
held=$(cat "$d/pids.current")
note "pids.current of the cage while the zombies are held: $held; of the parent: $(cat "$P/pids.current")"
assert_ge "$held" 101 "pids.current of the cage with 100 zombies"
wait $sp
rc=$?
cat "$T/c.out" "$T/c.err"
check_exit "$T/c.events" "$rc" 0 exited
grep -q 'inherited 0 zombies and 0 live' "$T/c.out" || fail "claude-cage left processes to the subreaper above it: $(cat "$T/c.out")"
assert_eq "$(cat "$P/pids.current")" 0 "pids.current of the cages' parent after run"
assert_eq "$(zombie_count)" 0 "zombies anywhere after run"
check_gone "$T/c.events" bot

# a shell loop that leaves 100 zombies: 100 background `true`s, then `exec sleep`, which never
# waits for them
subreaper claude-cage run --parent /vm-zomb-parent --name vm-zomb --events "$T/s.events" \
	-- sh -c 'for i in $(seq 100); do true & done; exec sleep 2' >"$T/s.out" 2>"$T/s.err"
rc=$?
cat "$T/s.out" "$T/s.err"
check_exit "$T/s.events" "$rc" 0 exited
grep -q 'inherited 0 zombies and 0 live' "$T/s.out" || fail "shell loop: claude-cage left processes to the subreaper above it: $(cat "$T/s.out")"
assert_eq "$(cat "$P/pids.current")" 0 "pids.current of the cages' parent after the shell loop"
assert_eq "$(zombie_count)" 0 "zombies anywhere after the shell loop"
check_gone "$T/s.events" bot
check_no_proc zombies
rmdir "$P" || fail "the cages' parent $P could not be removed: $(find "$P" -mindepth 1 -type d | tr '\n' ' ')"
