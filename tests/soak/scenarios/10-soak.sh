# The soak (tests/soak/run): SOAK_SEQ consecutive OOM-killed cages, then SOAK_PAR at once, with
# the supervisors' VmHWM recorded by the alert hook. Results go to the console as "soak: ..."
# lines (this scenario's log is only shown on failure).
# vmtest-timeout: 7000

SEQ=${SOAK_SEQ:-1000}
PAR=${SOAK_PAR:-200}
say() {
	echo "soak: $*" >/dev/console
	echo "soak: $*"
}
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
leftovers() { # cgroup dirs and state files left, as one line (empty when clean)
	_d=$(find "$CG" -mindepth 1 -type d | tr '\n' ' ')
	# the bots' tallies and max-cages locks stay by design: only cage records count
	_s=$(ls -A "$STATE_DIR" 2>/dev/null | grep -v -e '\.tally$' -e '\.lock$' | tr '\n' ' ')
	[ -z "$_d$_s" ] || echo "dirs: $_d state files: $_s"
}
# The alert hook: on the exit event, record the supervisor's (its parent's) VmHWM in kB.
cat >"$T/hook.sh" <<'H'
read -r line
case $line in
*'"event":"exit"'*) sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$PPID/status" >>"$1" ;;
esac
H
policy() { # policy FILE NAME HWMFILE [EXTRA]
	cat >"$1" <<P
[cage]
name = "$2"

[memory]
max = "50M"
swap-max = "0"
oom-group = true

[alerts]
exec = ["/bin/sh", "$T/hook.sh", "$3"]
$4
P
	chmod 644 "$1"
}
# stats FILE: "n N min A mean B max C" of the numbers in FILE (lines FROM..TO with $2 $3)
stats() {
	sed -n "${2:-1},${3:-\$}p" "$1" | awk '{ n++; s += $1; if (n == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
		END { if (n) printf "n %d min %d mean %.0f max %d", n, lo, s / n, hi; else print "n 0" }'
}

say "kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) MB; $SEQ consecutive cages, then $PAR at once"

# ---- phase 1: consecutive OOM kills ----
policy "$T/seq.toml" soak-seq "$T/seq.hwm"
bad=0
t0=$(now)
i=0
while [ $i -lt "$SEQ" ]; do
	i=$((i + 1))
	claude-cage run --policy "$T/seq.toml" --events "$T/seq.events" -- alloc 100 >/dev/null 2>>"$T/seq.err"
	rc=$?
	if [ $rc != 137 ]; then
		bad=$((bad + 1))
		echo "run $i: status $rc" >>"$T/seq.fail"
	fi
	l=$(leftovers)
	if [ -n "$l" ]; then
		bad=$((bad + 1))
		echo "run $i: left $l" >>"$T/seq.fail"
		say "run $i left $l"
		for d in $(find "$CG" -mindepth 1 -type d | sort -r); do echo 1 >"$d/cgroup.kill"; rmdir "$d"; done 2>/dev/null
		rm -f "$STATE_DIR"/*.json
	fi
	if [ $((i % 100)) = 0 ]; then
		say "progress $i/$SEQ after $(elapsed "$t0") s, $bad failures, VmHWM of the last 100 supervisors (kB): $(stats "$T/seq.hwm" $((i - 99)) "$i")"
	fi
done
seq_s=$(elapsed "$t0")
exits=$(ev_count "$T/seq.events" exit)
ooms=$(grep -c '"event":"exit","reason":"oom-killed","status":137' "$T/seq.events")
starts=$(ev_count "$T/seq.events" start)
lines=$(grep -c 'killed by the kernel OOM killer at memory.max 50.0 MiB' "$T/seq.err")
other=$(grep -vc 'killed by the kernel OOM killer at memory.max 50.0 MiB' "$T/seq.err")
say "phase 1: $SEQ runs in $seq_s s ($(awk -v s="$seq_s" -v n="$SEQ" 'BEGIN{printf "%.2f", s/n}') s each): $starts start events, $exits exit events, $ooms oom-killed/137, $lines OOM lines on stderr, $other other stderr lines, $bad failures"
[ -s "$T/seq.fail" ] && say "phase 1 failures: $(head -n 5 "$T/seq.fail" | tr '\n' ';')"
w=100
[ "$SEQ" -ge 200 ] || w=$((SEQ / 2))
first=$(stats "$T/seq.hwm" 1 "$w")
last=$(stats "$T/seq.hwm" $((SEQ - w + 1)) "$SEQ")
all=$(stats "$T/seq.hwm")
say "phase 1 supervisor VmHWM (kB): first $w: $first; last $w: $last; all: $all"
say "phase 1 VmHWM samples (run:kB): $(awk -v n="$SEQ" 'NR == 1 || NR % (n / 10 > 0 ? int(n / 10) : 1) == 0 { printf "%d:%d ", NR, $1 }' "$T/seq.hwm")"
seq_ok=$((SEQ - bad))
[ "$exits" = "$SEQ" ] && [ "$ooms" = "$SEQ" ] && [ "$starts" = "$SEQ" ] && [ "$lines" = "$SEQ" ] && [ "$other" = 0 ] ||
	{ bad=$((bad + 1)); say "phase 1: events or stderr lines do not add up"; }
fm=$(echo "$first" | awk '{print $6}')
lm=$(echo "$last" | awk '{print $6}')
hn=$(wc -l <"$T/seq.hwm")
[ "$hn" = "$SEQ" ] || { bad=$((bad + 1)); say "phase 1: $hn VmHWM samples for $SEQ runs"; }
if ! awk -v f="$fm" -v l="$lm" 'BEGIN{exit !(l <= f * 1.05 + 100)}'; then
	bad=$((bad + 1))
	say "phase 1: VmHWM grew: first $w mean $fm kB, last $w mean $lm kB"
fi
seq_bad=$bad

# ---- phase 2: PAR cages at once ----
policy "$T/par.toml" soak-par "$T/par.hwm" '[bot]
memory-max = "300M"'
bad=0
mkfifo "$T/go"
exec 3<>"$T/go"
t0=$(now)
i=0
while [ $i -lt "$PAR" ]; do
	i=$((i + 1))
	# 3>&-: only this shell holds the barrier's write end, so closing it releases every child
	claude-cage run --policy "$T/par.toml" --events "$T/par.events" -- sh -c 'read x <"$0"; exec alloc 100' "$T/go" \
		>/dev/null 2>>"$T/par.err" 3>&- &
	echo $! >>"$T/par.pids"
done
# all started, and every child blocked on the barrier
_i=0
until [ "$(ev_count "$T/par.events" start)" = "$PAR" ] &&
	[ "$(ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c "$T/go")" -gt "$PAR" ]; do
	_i=$((_i + 1))
	[ $_i -le 6000 ] || break
	sleep 0.1
done
up_s=$(elapsed "$t0")
live=$(claude-cage ps --name soak-par 2>/dev/null | grep -c ' running ')
mem=$(awk '/MemAvailable/{print int($2/1024)}' /proc/meminfo)
say "phase 2: $(ev_count "$T/par.events" start) of $PAR cages running after $up_s s ($live running in ps); MemAvailable $mem MB; bot pids.current $(cat "$CG/soak-par/pids.current" 2>/dev/null)"
[ "$live" = "$PAR" ] || { bad=$((bad + 1)); say "phase 2: ps shows $live running cages, expected $PAR"; }
t1=$(now)
exec 3>&-
for p in $(cat "$T/par.pids"); do
	wait "$p"
	rc=$?
	[ $rc = 137 ] || { bad=$((bad + 1)); echo "pid $p: status $rc" >>"$T/par.fail"; }
done
par_s=$(elapsed "$t1")
exits=$(ev_count "$T/par.events" exit)
ooms=$(grep -c '"event":"exit","reason":"oom-killed","status":137' "$T/par.events")
l=$(leftovers)
[ -z "$l" ] || { bad=$((bad + 1)); say "phase 2 left $l"; }
say "phase 2: $PAR cages released at once ended in $par_s s: $exits exit events, $ooms oom-killed/137, $bad failures"
[ -s "$T/par.fail" ] && say "phase 2 failures: $(head -n 5 "$T/par.fail" | tr '\n' ';')"
[ "$exits" = "$PAR" ] && [ "$ooms" = "$PAR" ] || { bad=$((bad + 1)); say "phase 2: events do not add up"; }
say "phase 2 supervisor VmHWM (kB): $(stats "$T/par.hwm")"
par_bad=$bad

say "cages ok $((SEQ - seq_bad + PAR - par_bad))"
say "cages failed $((seq_bad + par_bad))"
[ $((seq_bad + par_bad)) = 0 ] || fail "soak: $seq_bad failures in phase 1, $par_bad in phase 2"
