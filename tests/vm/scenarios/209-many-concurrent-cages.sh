# More cages at once than one user's inotify instances (fs.inotify.max_user_instances, 128 by
# default). claude-cage uses no inotify: it polls each cage's memory.events and pids.events, and
# its cgroup.events while it waits for the cage to empty, for POLLPRI. The scenario keeps the
# count above that limit so that a return to inotify (or any per-user limit of that size)
# shows here.
# N = that limit + 16 cages run together, each held at a barrier, then released at once; each
# child (busybox sh) tries one fork that its pids.max (1) refuses, which ends it with status 2
# ("can't fork"). Every run must exit 2 with its exit event, report the refused fork (a
# pids-max event), print nothing but its one line, and leave no cgroup and no state file.
# Found by the soak (tests/soak/run) when claude-cage still used inotify: a cage of 200 left
# behind with "failed to watch .../cgroup.events: EMFILE: Too many open files".
# vmtest-timeout: 240

lim=$(cat /proc/sys/fs/inotify/max_user_instances)
N=$((lim + 16))
note "fs.inotify.max_user_instances = $lim: $N cages"
cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-many"

[pids]
max = 1
P
mkfifo "$T/go"
exec 3<>"$T/go"
i=0
while [ $i -lt $N ]; do
	i=$((i + 1))
	# 3>&-: only this shell holds the barrier's write end
	claude-cage run --policy "$T/policy.toml" --events "$T/many.events" \
		-- sh -c 'read x <"$0"; (:); exit 0' "$T/go" >/dev/null 2>>"$T/many.err" 3>&- &
	echo $! >>"$T/pids"
done
_i=0
until [ "$(ev_count "$T/many.events" start)" = $N ] &&
	[ "$(ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c "$T/go")" -gt $N ]; do
	_i=$((_i + 1))
	[ $_i -le 1200 ] || fail "only $(ev_count "$T/many.events" start) of $N cages started in 120 s"
	sleep 0.1
done
note "$N cages running; $(ls "$STATE_DIR" | wc -l) state files"
exec 3>&-
bad=0
for p in $(cat "$T/pids"); do
	wait "$p"
	rc=$?
	[ $rc = 2 ] || { bad=$((bad + 1)); echo "supervisor $p: status $rc" >>"$T/bad"; }
done
note "$bad runs did not exit 2; $(ev_count "$T/many.events" exit) exit events ($(grep -c '"reason":"exited","status":2' "$T/many.events") exited/2), $(ev_count "$T/many.events" pids-max) pids-max events, $(grep -c warning "$T/many.err") warnings"
grep -m 3 warning "$T/many.err"
dirs=$(find "$CG/vm-many" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
states=$(ls "$STATE_DIR" 2>/dev/null | grep -c '^vm-many-')
[ "$dirs" = 0 ] || fail "$dirs of $N cages left in $CG/vm-many ($states state files); $(grep -m 1 warning "$T/many.err")"
[ "$states" = 0 ] || fail "$states state files left"
assert_eq "$bad" 0 "runs that did not exit 2 ($(head -n 3 "$T/bad" 2>/dev/null | tr '\n' ' '))"
assert_eq "$(grep -c '"reason":"exited","status":2' "$T/many.events")" $N "exit events exited/2"
assert_eq "$(grep -c warning "$T/many.err")" 0 "warnings on stderr (first: $(grep -m 1 warning "$T/many.err"))"
assert_eq "$(ev_count "$T/many.events" pids-max)" $N "pids-max events (one refused fork per cage)"
[ ! -e "$CG/vm-many" ] || fail "the bot's cgroup is left"
