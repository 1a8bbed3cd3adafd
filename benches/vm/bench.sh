# The benchmarks inside the bench VM (busybox ash, as root, claude-cage in the root cgroup with
# the memory and pids controllers). Prints on the console:
#   BENCH <key> <values...>        one figure (benches/vm/run knows the keys)
#   BENCHDATA <series> <values...> one raw measurement (a line of payloads/timeit.c)
#   BENCHNOTE <text>               something went wrong
# Sourced config: QUICK (1 = fewer repetitions), NS (leftover counts for the clean-up latency).
# With /alt/claude-cage present (BENCH_ALT_STATIC), start-up, idle and clean-up are measured
# for it too, beside the first.
. /bench/config
CG=/sys/fs/cgroup
T=/tmp/b
mkdir -p "$T" /tmp/shim
now() { cut -d' ' -f1 /proc/uptime; }
ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
note() { echo "BENCHNOTE $*"; }
st() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

echo "BENCH machine kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MB, controllers: $(cat $CG/cgroup.controllers)"

# (program-from-env: the shim, as root, takes $CLAUDE_CAGE_PROGRAM only when the policy says so)
printf 'program-from-env = true\n\n[cage]\nname = "vm-bench"\n' >"$T/min.toml"
printf '[cage]\nname = "vm-clean"\n\n[pids]\nmax = "max"\n' >"$T/clean.toml"
printf '[cage]\nname = "vm-conc"\n' >"$T/conc.toml"
chmod 644 "$T"/*.toml
ln -s /bin/claude-cage /tmp/shim/claude

# --- start-up: the payload run directly, through `run` (minimal and default policy) and the
# shim, and in the kernel's floor of a cage (mincage; with --limits, also the default policy's
# cgroup writes), interleaved in blocks so that a drift hits every variant alike ---
blocks=3
per=20
[ "$QUICK" = 1 ] && blocks=1 && per=10
s="$T/stamp"
b=0
while [ $b -lt $blocks ]; do
	timeit $per "$s" leftovers 0 "$s" | sed 's/^/BENCHDATA start-direct /'
	timeit $per "$s" mincage $CG leftovers 0 "$s" 2>>"$T/err" | sed 's/^/BENCHDATA start-mincage /'
	timeit $per "$s" mincage --limits $CG leftovers 0 "$s" 2>>"$T/err" | sed 's/^/BENCHDATA start-mincage-limits /'
	timeit $per "$s" claude-cage run --policy "$T/min.toml" -- leftovers 0 "$s" 2>>"$T/err" | sed 's/^/BENCHDATA start-run /'
	timeit $per "$s" claude-cage run --name vm-startd -- leftovers 0 "$s" 2>>"$T/err" | sed 's/^/BENCHDATA start-run-default /'
	CLAUDE_CAGE_PROGRAM=/bin/leftovers CLAUDE_CAGE_POLICY="$T/min.toml" \
		timeit $per "$s" /tmp/shim/claude 0 "$s" 2>>"$T/err" | sed 's/^/BENCHDATA start-shim /'
	[ -x /alt/claude-cage ] &&
		timeit $per "$s" /alt/claude-cage run --policy "$T/min.toml" -- leftovers 0 "$s" 2>>"$T/err" | sed 's/^/BENCHDATA start-run-alt /'
	[ -x /alt/claude-cage ] &&
		timeit $per "$s" /alt/claude-cage run --name vm-startd -- leftovers 0 "$s" 2>>"$T/err" | sed 's/^/BENCHDATA start-run-default-alt /'
	b=$((b + 1))
done
[ -s "$T/err" ] && note "start-up stderr: $(head -n 3 "$T/err" | tr '\n' ' ')"

# --- the idle supervisor: peak RSS and context switches over IDLE seconds (default policy:
# memory and pids limits, so the supervisor watches memory.events and pids.events) ---
idle=30
[ "$QUICK" = 1 ] && idle=5
# idle_run KEY BINARY
idle_run() {
	rm -f "$T/idle.events"
	$2 run --name vm-idle --events "$T/idle.events" -- sleep 600 >/dev/null 2>>"$T/idle.err" &
	sup=$!
	i=0
	while ! grep -q '"event":"start"' "$T/idle.events" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if grep -q '"event":"start"' "$T/idle.events" 2>/dev/null; then
		sleep 1
		v0=$(st $sup voluntary_ctxt_switches)
		n0=$(st $sup nonvoluntary_ctxt_switches)
		sleep $idle
		v1=$(st $sup voluntary_ctxt_switches)
		n1=$(st $sup nonvoluntary_ctxt_switches)
		echo "BENCH $1 $(st $sup VmHWM) $(st $sup RssAnon) $(($(st $sup RssFile) + $(st $sup RssShmem))) $v0 $v1 $n0 $n1 $idle"
	else
		note "the idle cage did not start: $(head -n 3 "$T/idle.err" | tr '\n' ' ')"
	fi
	kill -TERM $sup
	wait $sup
}
idle_run idle claude-cage
[ -x /alt/claude-cage ] && idle_run idle-alt /alt/claude-cage

# --- clean-up latency with N leftover processes ---
echo 4194304 >/proc/sys/kernel/pid_max
echo 1000000 >/proc/sys/kernel/threads-max
# clean_run SERIES BINARY
clean_run() {
	for n in $NS; do
		reps=5
		[ "$n" -ge 1000 ] && reps=3
		[ "$n" -ge 10000 ] && reps=2
		[ "$QUICK" = 1 ] && reps=1
		timeit $reps "$s" $2 run --policy "$T/clean.toml" -- leftovers "$n" "$s" 2>"$T/clean-$n.err" |
			sed "s/^/BENCHDATA $1 $n /"
		[ -s "$T/clean-$n.err" ] && echo "BENCH $1-fail-$n $(tail -n 2 "$T/clean-$n.err" | tr '\n' ' ')"
		left=$(find $CG -mindepth 1 -type d | wc -l)
		[ "$left" = 0 ] || note "after $n leftovers: $left cgroup dirs left"
	done
}
clean_run cleanup claude-cage
[ -x /alt/claude-cage ] && clean_run cleanup-alt /alt/claude-cage

# --- scale: WANT cages at once, ps, kill --all ---
want=200
[ "$QUICK" = 1 ] && want=20
t0=$(now)
pids=
i=0
while [ $i -lt $want ]; do
	claude-cage run --policy "$T/conc.toml" --events "$T/conc.events" -- sleep 600 >/dev/null 2>>"$T/conc.err" &
	pids="$pids $!"
	i=$((i + 1))
done
i=0
# (read through cat: grep -c of a file not made yet prints nothing, and the test would end the wait)
starts() { cat "$T/conc.events" 2>/dev/null | grep -c '"event":"start"'; }
while [ "$(starts)" -lt $want ] && [ $i -lt 6000 ]; do
	sleep 0.1
	i=$((i + 1))
done
start_ms=$(ms_since "$t0")
started=$(starts)
dirs=$(find $CG/vm-conc -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
[ -s "$T/conc.err" ] && note "scale stderr: $(head -n 3 "$T/conc.err" | tr '\n' ' ')"
TIMEIT_DEVNULL=1 timeit 5 - claude-cage ps >"$T/ps.raw"
sed 's/^/BENCHDATA ps /' "$T/ps.raw"
ps_ms=$(awk '{ print $1 }' "$T/ps.raw" | sort -n | awk '{ v[NR] = $1 } END { printf "%d", v[int((NR + 1) / 2)] / 1000 }')
t1=$(now)
claude-cage kill --all >"$T/kill.out" 2>&1 || note "kill --all: $(tail -n 2 "$T/kill.out" | tr '\n' ' ')"
kill_ms=$(ms_since "$t1")
for p in $pids; do wait $p; done
exits=$(grep -c '"event":"exit"' "$T/conc.events")
killed=$(grep -c '"reason":"killed"' "$T/conc.events")
dl=$(find $CG -mindepth 1 -type d | wc -l)
pl=0
for p in /proc/[0-9]*; do
	[ "$(cat "$p/comm" 2>/dev/null)" = sleep ] || continue
	s_=$(sed -n 's/.*) \(.\).*/\1/p' "$p/stat" 2>/dev/null)
	[ -n "$s_" ] && [ "$s_" != Z ] && pl=$((pl + 1))
done
# state files only: the bots' tallies (<bot>.tally) and locks outlive their cages by design
sl=$(ls /run/claude-cage/*.json 2>/dev/null | wc -l)
echo "BENCH conc $want $started $start_ms $dirs $ps_ms $kill_ms $exits $killed $dl $pl $sl"
