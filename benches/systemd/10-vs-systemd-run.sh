# Start-to-finish wall time of `true`: bare, under `systemd-run --scope`, and in a claude-cage
# cage of each backend (docs/benchmarks.md, "Versus `systemd-run --scope true`"). A bench, run by
# benches/systemd/run (tests/systemd/run with SYSTEMD_SCENARIOS=benches/systemd): it fails only
# when a command fails or lands in the wrong place, never on a figure.
#
# Each run of a command is timed by `timeit 1 -` (benches/payloads/timeit.c, compiled into
# /usr/local/bin by tests/systemd/run from benches/systemd/timeit.c, a link): fork to reaping.
# A round runs every command once, in an order that rotates from round to round, so that load
# drift and the after-effects of one command (systemd collecting a scope) hit all alike; the
# first `warmup` rounds are dropped.
#
# Where: the whole loop runs in a root service with Delegate=yes whose ExecStart is `claude-cage
# subgroup -- ...` (the set-up of docs/systemd.md, "The cgroupfs backend in a delegated
# service"): that is where an operator's cgroupfs cages live under systemd, and systemd-run and
# the systemd backend work from there as from anywhere.
#
# Beside them, two floors: `claude-cage --version` (exec of the binary) and benches/payloads/
# mincage.c (a link here too: three mkdir, clone3 into the last, cgroup.kill, three rmdir, in the
# delegated service: the kernel's part of any cgroupfs cage there).
#
# Then, fewer rounds of the phases: launch (fork to the program's main()) and teardown (its exit
# to reaped), with benches/payloads/leftovers.c (also a link) as the program. Then the
# system bus traffic of three single runs of each (dbus-monitor --profile): where the systemd
# backend's time goes. And when the image has strace (benches/systemd/run adds it), one traced
# run of each of systemd-run, cage-systemd, cage-cgroupfs.
#
# Output: `bench: ...` lines, captured as `bench` (SYSTEMD_OUT/captured/bench.txt); the raw lines
# (`<command> <total_us> <launch_us> <child_us> <teardown_us> <maxrss_kib> <status>`) as
# `bench-raw` and `bench-raw-phases`; the bus traffic, message by message, as `bench-dbus`; the
# strace summaries and slowest calls as `bench-strace`, the traces as `bench-strace-tt-<what>`.
# vmtest-timeout: 3000

reps=100
warmup=5
phase_reps=$((reps < 30 ? reps : 30))

for p in timeit leftovers mincage; do
	command -v $p >/dev/null || fail "no $p in the image (tests/systemd/run compiles SYSTEMD_SCENARIOS/*.c: benches/systemd/$p.c)"
done

# --- the policies: a name and a backend; the -64m ones add the limit systemd-run is given ---
systemd_policy "$T/sd.toml" bench-sd
systemd_policy "$T/sd64.toml" bench-sd '[memory]' 'max = "64M"'
printf '[cage]\nname = "bench-fs"\nbackend = "cgroupfs"\n' >"$T/fs.toml"
printf '[cage]\nname = "bench-fs"\nbackend = "cgroupfs"\n\n[memory]\nmax = "64M"\n' >"$T/fs64.toml"
chmod 644 "$T/fs.toml" "$T/fs64.toml"

# name <TAB> command (split on blanks)
cat >"$T/cmds" <<CMDS
true	/bin/true
cage-version	/usr/bin/claude-cage --version
mincage	/usr/local/bin/mincage $CG/system.slice/cc-bench.service /bin/true
systemd-run	/usr/bin/systemd-run --scope --quiet true
systemd-run-64m	/usr/bin/systemd-run --scope --quiet -p MemoryMax=64M true
cage-systemd	/usr/bin/claude-cage run --policy $T/sd.toml -- true
cage-systemd-64m	/usr/bin/claude-cage run --policy $T/sd64.toml -- true
cage-cgroupfs	/usr/bin/claude-cage run --policy $T/fs.toml -- true
cage-cgroupfs-64m	/usr/bin/claude-cage run --policy $T/fs64.toml -- true
CMDS
# Another build (benches/systemd/run's BENCH_ALT), in the same rounds.
if [ -x /opt/alt/claude-cage ]; then
	cat >>"$T/cmds" <<CMDS
alt-version	/opt/alt/claude-cage --version
alt-systemd	/opt/alt/claude-cage run --policy $T/sd.toml -- true
alt-cgroupfs	/opt/alt/claude-cage run --policy $T/fs.toml -- true
CMDS
fi
# The phases: `leftovers 0 STAMP` for `true` writes when its main() began and when it exits.
cat >"$T/cmds-phases" <<CMDS
direct	/usr/local/bin/leftovers 0 $T/stamp
systemd-run	/usr/bin/systemd-run --scope --quiet /usr/local/bin/leftovers 0 $T/stamp
cage-systemd	/usr/bin/claude-cage run --policy $T/sd.toml -- /usr/local/bin/leftovers 0 $T/stamp
cage-cgroupfs	/usr/bin/claude-cage run --policy $T/fs.toml -- /usr/local/bin/leftovers 0 $T/stamp
CMDS

# The loops, run in the delegated service. Progress goes to the console (vmtest: lines).
cat >"$T/measure.sh" <<'MEASURE'
set -u
dir=$1 reps=$2 warm=$3 phase_reps=$4
tty=/dev/ttyS0
[ -w "$tty" ] || tty=/dev/null
# rounds CMDS OUT ROUNDS WARMUP STAMP: WARMUP + ROUNDS rounds of every command of CMDS, one
# "<name> <timeit line>" per run in OUT (the warm-up rounds not recorded), the order rotating
rounds() {
	local names=() cmds=() n c k r j i line
	while IFS=$'\t' read -r n c; do
		names+=("$n")
		cmds+=("$c")
	done <"$1"
	k=${#names[@]}
	: >"$2"
	for ((r = 1; r <= $4 + $3; r++)); do
		for ((j = 0; j < k; j++)); do
			i=$(((r + j) % k))
			# shellcheck disable=SC2086 # the command is split on blanks on purpose
			line=$(timeit 1 "$5" ${cmds[i]} 2>>"$dir/measure.err")
			[ "$r" -le "$4" ] || echo "${names[i]} $line" >>"$2"
		done
		[ $((r % 10)) != 0 ] || echo "vmtest: bench: ${1##*/} round $r of $(($4 + $3)) at $(cut -d' ' -f1 /proc/uptime)s, load $(cut -d' ' -f1-3 /proc/loadavg)" >"$tty"
	done
}
# where each kind of process runs: this loop, a cgroupfs cage, a systemd cage, a systemd-run scope
{
	echo "loop $(sed -n 's/^0:://p' /proc/self/cgroup)"
	echo "cage-cgroupfs $(claude-cage run --policy "$dir/fs.toml" -- sed -n 's/^0:://p' /proc/self/cgroup)"
	echo "cage-systemd $(claude-cage run --policy "$dir/sd.toml" -- sed -n 's/^0:://p' /proc/self/cgroup)"
	echo "systemd-run $(systemd-run --scope --quiet sed -n 's/^0:://p' /proc/self/cgroup)"
} >"$dir/where" 2>&1
export TIMEIT_DEVNULL=1
rounds "$dir/cmds" "$dir/raw" "$reps" "$warm" -
rounds "$dir/cmds-phases" "$dir/raw-phases" "$phase_reps" 2 "$dir/stamp"
echo "service-subtree-control $(cat "/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup | sed 's,/[^/]*$,,')/cgroup.subtree_control")" >>"$dir/where"
# one traced run of each (when the image has strace: benches/systemd/run puts it there), after
# the timed rounds: -c (a summary, wall time per call) and -ttt -T (each call, for the slowest)
if command -v strace >/dev/null; then
	for kind in systemd-run cage-systemd cage-cgroupfs; do
		case $kind in
		systemd-run) c=(systemd-run --scope --quiet true) ;;
		cage-systemd) c=(claude-cage run --policy "$dir/sd.toml" -- true) ;;
		cage-cgroupfs) c=(claude-cage run --policy "$dir/fs.toml" -- true) ;;
		esac
		strace -f -c -w -o "$dir/strace-c-$kind.txt" "${c[@]}" 2>>"$dir/measure.err"
		strace -f -ttt -T -o "$dir/strace-tt-$kind.txt" "${c[@]}" 2>>"$dir/measure.err"
	done
fi
# where the CPU goes over 20 systemd cages, system-wide (when the image has perf: BENCH_PERF=1)
if command -v perf >/dev/null; then
	perf record -a -g -e cpu-clock -F 2000 -o "$dir/perf.data" -- \
		bash -c "for i in \$(seq 20); do claude-cage run --policy $dir/sd.toml -- true; done" >/dev/null 2>>"$dir/perf.err"
fi
MEASURE

note "claude-cage $(claude-cage --version | head -n 1); $(systemctl --version | head -n 1)"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(now)
systemd-run --quiet --wait --pipe --collect --unit cc-bench -p Delegate=yes \
	/usr/bin/claude-cage subgroup --name bench-loop -- /bin/bash "$T/measure.sh" "$T" "$reps" "$warmup" "$phase_reps" \
	>"$T/service.out" 2>&1 </dev/null
rc=$?
t1=$(now)
load1=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$T/service.out" "$T/where"
[ ! -s "$T/measure.err" ] || {
	echo "--- stderr of the commands"
	head -c 2000 "$T/measure.err"
}
assert_eq "$rc" 0 "systemd-run ... claude-cage subgroup -- measure.sh: status"

# the places: the loop in the delegated service, each kind of cage where it belongs
grep -qE '^loop /system.slice/cc-bench.service/bench-loop$' "$T/where" || fail "the loop is not in cc-bench.service/bench-loop: $(head -n 1 "$T/where")"
grep -qE '^cage-cgroupfs /system.slice/cc-bench.service/bench-fs/bench-fs-[0-9]+-[0-9]+/main$' "$T/where" ||
	fail "the cgroupfs cage is not below the delegated service: $(grep '^cage-cgroupfs' "$T/where")"
grep -qE '^cage-systemd /claude.slice/claude-cage.slice/claude-cage-bench\\x2dsd.slice/claude-cage-bench-sd-[0-9]+-[0-9]+.scope/main$' "$T/where" ||
	fail "the systemd cage is not a scope in its bot's slice in claude-cage.slice: $(grep '^cage-systemd' "$T/where")"
grep -qE '^systemd-run /system.slice/run-[^/]+\.scope$' "$T/where" || fail "systemd-run's scope: $(grep '^systemd-run' "$T/where")"

# every run exited 0 (and the phase runs left their stamps), and each command has its rounds
bad=$(awk '$7 != 0' "$T/raw" "$T/raw-phases" | wc -l)
[ "$bad" = 0 ] || fail "$bad run(s) did not exit 0: $(awk '$7 != 0' "$T/raw" "$T/raw-phases" | head -n 3 | tr '\n' ';')"
bad=$(awk '$3 < 0 || $5 < 0' "$T/raw-phases" | wc -l)
[ "$bad" = 0 ] || fail "$bad phase run(s) without stamps: $(awk '$3 < 0 || $5 < 0' "$T/raw-phases" | head -n 3 | tr '\n' ';')"
while IFS=$'\t' read -r n _; do
	assert_eq "$(awk -v n="$n" '$1 == n' "$T/raw" | wc -l)" "$reps" "runs of $n"
done <"$T/cmds"

# stats FILE NAME [COLUMN]: "median p10 p90 min max mean n" in ms of COLUMN (default 2: total)
# of NAME's lines (nearest-rank percentiles)
stats() {
	awk -v n="$2" -v c="${3:-2}" '$1 == n { print $c / 1000 }' "$1" | sort -g | awk '{ v[NR] = $1; s += $1 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		p10 = v[int(NR * 0.1) > 0 ? int(NR * 0.1) : 1]; p90 = v[int(NR * 0.9 + 0.999)]
		printf "%.2f %.2f %.2f %.2f %.2f %.2f %d\n", m, p10, p90, v[1], v[NR], s / NR, NR }'
}
med() { stats "$T/raw" "$1" | cut -d' ' -f1; }
{
	echo "bench: claude-cage $(claude-cage --version | head -n 1); $(systemctl --version | head -n 1); kernel $(uname -r); $(nproc) cpus"
	echo "bench: where: $(paste -sd';' "$T/where" | sed 's/;/; /g')"
	echo "bench: $reps rounds of $(wc -l <"$T/cmds") commands (first $warmup rounds dropped), rotating order, then $phase_reps rounds of the phases, in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}')s; guest load before $load0, after $load1"
	while IFS=$'\t' read -r n c; do
		read -r md p10 p90 mn mx mean cnt < <(stats "$T/raw" "$n")
		echo "bench: time $n median=$md p10=$p10 p90=$p90 min=$mn max=$mx mean=$mean n=$cnt (ms) : $c"
	done <"$T/cmds"
	pairs="systemd-run:cage-systemd systemd-run:cage-cgroupfs systemd-run-64m:cage-systemd-64m systemd-run-64m:cage-cgroupfs-64m"
	[ ! -x /opt/alt/claude-cage ] || pairs="$pairs systemd-run:alt-systemd cage-version:alt-version cage-systemd:alt-systemd cage-cgroupfs:alt-cgroupfs"
	for pair in $pairs; do
		a=${pair%%:*} b=${pair#*:}
		# targets (docs/benchmarks.md), against systemd-run: the systemd backend at least as
		# fast, the cgroupfs backend 10 times faster; the alt build against this tree: none
		awk -v a="$a" -v b="$b" -v x="$(med "$a")" -v y="$(med "$b")" \
			'BEGIN { r = x / y; t = (a !~ /^systemd-run/) ? 0 : (b ~ /systemd/) ? 1 : 10
				printf "bench: ratio %s/%s=%.2f (medians %.2f/%.2f ms", a, b, r, x, y
				if (t) printf "; target >= %d: %s", t, (r >= t ? "met" : "MISSED"); print ")" }'
	done
	while IFS=$'\t' read -r n _; do
		read -r lm lp10 lp90 _ _ _ cnt < <(stats "$T/raw-phases" "$n" 3)
		read -r tm tp10 tp90 _ < <(stats "$T/raw-phases" "$n" 5)
		read -r am _ < <(stats "$T/raw-phases" "$n" 2)
		echo "bench: phases $n launch median=$lm p10=$lp10 p90=$lp90 teardown median=$tm p10=$tp10 p90=$tp90 total median=$am n=$cnt (ms)"
	done <"$T/cmds-phases"
} >"$T/bench.txt"
cat "$T/bench.txt"
capture bench-raw <"$T/raw"
capture bench-raw-phases <"$T/raw-phases"

# --- where the time goes: the system bus traffic of single runs (dbus-monitor, timestamps as it
# receives the messages). systemd-run as root talks to systemd over its private socket
# (/run/systemd/private), so of its run only the job signals systemd broadcasts show (to
# systemd-logind, a subscriber); claude-cage goes through dbus-daemon.
dbus-monitor --system --profile >"$T/mon.txt" 2>&1 &
mon=$!
wait_for 20 "dbus-monitor is listening" grep -q . "$T/mon.txt"
sleep 1
for _ in 1 2 3; do
	for c in "systemd-run --scope --quiet true" "claude-cage run --policy $T/sd.toml -- true"; do
		echo "mark $(date +%s.%N) start $c" >>"$T/marks"
		# shellcheck disable=SC2086 # the command is split on blanks on purpose
		$c
		echo "mark $(date +%s.%N) end" >>"$T/marks"
		sleep 1
	done
done
kill "$mon"
wait "$mon" 2>/dev/null
# dbus.txt: one line per message: ms since the command's start, type, sender, destination, member
# (PropertiesChanged and Unit* signals counted, not shown); dbus-summary.txt: the main steps
{
	cat "$T/marks"
	cat "$T/mon.txt"
} | sort -s -k2,2g | awk -v sum="$T/dbus-summary.txt" '
	function ms(t) { return (t - t0) * 1000 }
	# at X, and since Y: "-" for a step not seen
	function at(x) { return (x == "") ? "-" : sprintf("%.0f", x) }
	function since(x, y) { return (x == "" || y == "") ? "" : sprintf(" (+%.0f)", x - y) }
	$1 == "mark" && $3 == "start" {
		t0 = $2; $1 = $2 = $3 = ""; cmd = substr($0, 4); printf "=== %s\n", cmd
		label = (cmd ~ /^systemd-run/) ? "systemd-run" : "cage-systemd"
		skipped = 0; hello = stu = stur = jn = jr = stop = stopr = jr2 = stukey = stopkey = ""; next }
	$1 == "mark" && $3 == "end" {
		e = ms($2)
		printf "%9.2f ms  end (exit of the command)%s\n", e, skipped ? sprintf("; %d PropertiesChanged/Unit* signals not shown", skipped) : ""
		if (label == "systemd-run")
			printf "bench: dbus systemd-run: JobNew at %s ms, JobRemoved at %s%s, exit at %s%s\n", at(jn), at(jr), since(jr, jn), at(e), since(e, jr) >>sum
		else
			printf "bench: dbus cage-systemd: Hello at %s ms, StartTransientUnit at %s%s, answered at %s%s, JobRemoved at %s%s, StopUnit at %s%s, answered at %s%s%s, exit at %s%s\n", at(hello), at(stu), since(stu, hello), at(stur), since(stur, stu), at(jr), since(jr, stur), at(stop), since(stop, jr), at(stopr), since(stopr, stop), (jr2 == "") ? "" : ", its JobRemoved at " at(jr2), at(e), since(e, (jr2 == "") ? stopr : jr2) >>sum
		t0 = ""; next }
	t0 == "" || $1 ~ /^#/ { next }
	$1 == "sig" && $NF ~ /^(PropertiesChanged|UnitNew|UnitRemoved|UnitFilesChanged)$/ { skipped++; next }
	# dbus-monitor --profile: mc/sig: type time serial sender destination path interface member;
	# mr/err: type time serial sender destination reply-serial
	$1 == "mc" { call[$4 " " $3] = $NF }
	$1 == "mc" && $NF == "Hello" && hello == "" { hello = ms($2) }
	$1 == "mc" && $NF == "StartTransientUnit" { stu = ms($2); stukey = $4 " " $3 }
	$1 == "mc" && $NF == "StopUnit" { stop = ms($2); stopkey = $4 " " $3 }
	($1 == "mr" || $1 == "err") && $5 " " $6 == stukey { stur = ms($2) }
	($1 == "mr" || $1 == "err") && $5 " " $6 == stopkey { stopr = ms($2) }
	$1 == "sig" && $NF == "JobNew" && jn == "" { jn = ms($2) }
	$1 == "sig" && $NF == "JobRemoved" { if (stop != "") jr2 = ms($2); else if (jr == "") jr = ms($2) }
	{ what = ($1 == "mr" || $1 == "err") ? "(reply to " call[$5 " " $6] ")" : $NF
	  printf "%9.2f ms  %-4s %-8s -> %-24s %s\n", ms($2), $1, $4, $5, what }' >"$T/dbus.txt"
cat "$T/dbus.txt"
capture bench-dbus <"$T/dbus.txt"
cat "$T/dbus-summary.txt" >>"$T/bench.txt"

# --- where the time goes, by system call (when the image has strace) ---
if [ -s "$T/strace-tt-cage-cgroupfs.txt" ]; then
	for kind in systemd-run cage-systemd cage-cgroupfs; do
		tt=$T/strace-tt-$kind.txt
		echo "=== $kind: strace -f -c -w (all processes and threads; wall time per call)"
		cat "$T/strace-c-$kind.txt"
		echo "=== $kind: the 15 slowest calls of another traced run (strace -f -ttt -T): seconds, pid, call"
		awk '/<[0-9.]+>$/ { t = $NF; gsub(/[<>]/, "", t); $2 = ""; print t, substr($0, 1, 120) }' "$tt" | sort -gr | head -n 15
		# bench line: calls (resumed halves not counted twice), processes, traced span
		awk -v k="$kind" '$2 ~ /^[0-9]+\.[0-9]+$/ { if (t0 == "") t0 = $2; t1 = $2; pid[$1] = 1 }
			$3 !~ /^(<\.\.\.|\+\+\+|---)/ && $2 ~ /^[0-9]+\.[0-9]+$/ { n++ }
			END { np = 0; for (p in pid) np++; printf "bench: strace %s: %d system calls in %d processes/threads, first to last %.0f ms traced\n", k, n, np, (t1 - t0) * 1000 }' "$tt" >>"$T/bench.txt"
	done >"$T/strace.txt"
	capture bench-strace <"$T/strace.txt"
	for kind in systemd-run cage-systemd cage-cgroupfs; do
		cut -c1-200 "$T/strace-tt-$kind.txt" | capture "bench-strace-tt-$kind"
	done
fi
# --- where the CPU goes (when the image has perf) ---
if [ -s "$T/perf.data" ]; then
	{
		echo "=== perf record -a -e cpu-clock -F 2000 over 20 runs of: claude-cage run --policy sd.toml -- true"
		echo "=== by process and object (share of all samples of both CPUs, idle included)"
		perf report -i "$T/perf.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 30
		echo "=== by process, object and symbol (top 80)"
		perf report -i "$T/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 80
	} | capture bench-perf
fi
capture bench <"$T/bench.txt"
check_no_units
