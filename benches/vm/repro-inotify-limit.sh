# Reproduction (run with BENCH_VM_SCRIPT=benches/vm/repro-inotify-limit.sh benches/vm/run):
# every supervisor holds one inotify instance (supervise.rs, watch_counters) for memory.events and
# pids.events, and a user has fs.inotify.max_user_instances = 128 by default. A supervisor that
# cannot get one carries on silently without the watch: it reports no memory-high, oom-kill or
# pids-max event for its cage and runs no alert hook for them.
# Here a cage whose child hits pids.max is run twice: alone, then with 130 other cages alive.
. /bench/config
T=/tmp/r
mkdir -p "$T"
printf '[cage]\nname = "vm-idle"\n' >"$T/idle.toml"
printf '[cage]\nname = "vm-pids"\n\n[pids]\nmax = 5\n' >"$T/pids.toml"
chmod 644 "$T"/*.toml
inotify_instances() { ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c 'anon_inode:inotify'; }
# probe TAG: a child that forks 20 processes under pids.max = 5; the fork fails, pids.events
# "max" rises, and a pids-max event is expected
probe() {
	claude-cage run --policy "$T/pids.toml" --events "$T/$1.events" -- leftovers 20 - >/dev/null 2>"$T/$1.err"
	echo "BENCHNOTE $1: status $?, max_user_instances $(cat /proc/sys/fs/inotify/max_user_instances), inotify instances before: $2, pids-max events: $(grep -c '"event":"pids-max"' "$T/$1.events"), exit: $(grep '"event":"exit"' "$T/$1.events" | sed 's/.*"reason"/"reason"/')"
}
probe alone "$(inotify_instances)"
pids=
i=0
while [ $i -lt 130 ]; do
	claude-cage run --policy "$T/idle.toml" -- sleep 600 >/dev/null 2>>"$T/idle.err" &
	pids="$pids $!"
	i=$((i + 1))
done
i=0
while [ "$(find /sys/fs/cgroup/vm-idle -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)" -lt 130 ] && [ $i -lt 3000 ]; do
	sleep 0.1
	i=$((i + 1))
done
sleep 2
probe with-130-cages "$(inotify_instances)"
claude-cage kill --all >/dev/null 2>&1
for p in $pids; do wait $p; done
[ -s "$T/idle.err" ] && echo "BENCHNOTE idle cages' stderr: $(sort "$T/idle.err" | uniq -c | head -n 3 | tr '\n' ' ')"
true
