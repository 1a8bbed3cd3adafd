# The example bot service as shipped (/usr/share/doc/claude-cage/packaging/systemd/example-bot.service:
# User=example-bot, Delegate=memory pids cpu, ExecStart=claude-cage subgroup -- example-bot),
# with the cgroupfs backend chosen by backend = "auto" inside the delegated subtree: the cages
# are below the service's cgroup (example-bot.service/example-bot/<cage>), the bot and its
# claude-cage supervisors are in example-bot.service/supervisor and in no cage, the limits hold;
# `systemctl stop` leaves no process, no cgroup and no unit behind.
# vmtest-timeout: 120

svc=$CG/system.slice/example-bot.service
ev=/var/lib/example-bot/events.jsonl
cp /usr/share/doc/claude-cage/packaging/systemd/example-bot.service /etc/systemd/system/example-bot.service
example_bot_policy
trap example_bot_cleanup EXIT
on_fail() {
	echo "events file $ev:"
	ls -la /var/lib/example-bot
	cat -A "$ev" | head -c 3000
	proc_report $(pgrep -u example-bot)
	find "$svc" -type d | while read -r d; do echo "$d: procs $(tr '\n' ' ' <"$d/cgroup.procs") events $(tr '\n' ' ' <"$d/cgroup.events")"; done
	ls -la /tmp/claude-cage-* 2>&1
	journalctl -q -n 40 -u example-bot.service
}
systemctl daemon-reload
systemctl start example-bot.service || fail "systemctl start example-bot.service failed: $(journalctl -q -n 5 -u example-bot.service | tr '\n' ' ')"
two_starts() { [ "$(ev_count "$ev" start)" -ge 2 ]; }
wait_for 30 "two start events in $ev" two_starts
# the start event is written as the child is released: wait until both have run their program
children_run() {
	local c
	for c in $(jq -r 'select(.event == "start") | .pid' "$ev"); do
		[ "$(cat "/proc/$c/comm" 2>/dev/null)" = sleep ] || return 1
	done
}
wait_for 10 "both caged children run sleep" children_run
assert_eq "$(systemctl show -P Delegate example-bot.service)" yes "example-bot.service Delegate"
assert_eq "$(systemctl show -P DelegateControllers example-bot.service)" "cpu memory pids" "example-bot.service DelegateControllers"
main=$(systemctl show -P MainPID example-bot.service)
assert_eq "$(cgroup_of "$main")" /system.slice/example-bot.service/supervisor "the bot's (MainPID $main) cgroup"
assert_eq "$(stat -c %U "/proc/$main")" example-bot "the bot's user"
assert_eq "$(cat "$svc/supervisor/cgroup.type")" domain "supervisor cgroup type"

# every process of the service: the bot and the supervisors in supervisor/, the children in cages
sups=$(pgrep -u example-bot -f '^/usr/bin/claude-cage run' | sort)
assert_eq "$(echo "$sups" | wc -w)" 2 "claude-cage supervisors of the bot"
for p in $main $sups; do
	assert_eq "$(cgroup_of "$p")" /system.slice/example-bot.service/supervisor "cgroup of the bot's own process $p ($(cat /proc/$p/comm))"
done
for id in $(jq -r 'select(.event == "start") | .cage' "$ev"); do
	dir=$(jq -r --arg c "$id" 'select(.event == "start" and .cage == $c) | .cgroup' "$ev")
	child=$(jq -r --arg c "$id" 'select(.event == "start" and .cage == $c) | .pid' "$ev")
	assert_eq "$dir" "$svc/example-bot/$id" "cgroup of cage $id"
	assert_eq "$(cgroup_of "$child")" "/system.slice/example-bot.service/example-bot/$id/main" "cgroup of the child $child"
	assert_eq "$(cat "/proc/$child/comm")" sleep "the caged process"
	assert_eq "$(cat "$dir/memory.max")" 67108864 "$id memory.max"
	assert_eq "$(cat "$dir/pids.max")" 32 "$id pids.max"
	assert_eq "$(cat "$dir/main/cgroup.procs")" "$child" "processes of cage $id"
done
# nothing but the supervisor subgroup and the bot's cgroup at the top of the service
assert_eq "$(cd "$svc" && find . -mindepth 1 -maxdepth 1 -type d | sort | tr '\n' ' ')" "./example-bot ./supervisor " "subgroups of example-bot.service"
[ -z "$(cat "$svc/cgroup.procs")" ] || fail "processes in the service's top cgroup: $(cat "$svc/cgroup.procs" | tr '\n' ' ')"

# check --unit judges the service's cgroup and user, not this shell's (vmtest.service, root,
# no Delegate=, where auto would pick the systemd backend)
op unitcheck check --unit example-bot.service --policy /etc/claude-cage/example-bot.toml
cat "$T/unitcheck.out"
assert_eq "$rc" 0 "check --unit example-bot.service: status"
for line in \
	"OK       unit example-bot.service: runs as example-bot, Delegate=yes" \
	"OK       unit example-bot.service: its main process runs in cgroup /system.slice/example-bot.service/supervisor; the findings below are for it" \
	"OK       backend cgroupfs: the parent of claude-cage's cgroup /system.slice/example-bot.service/supervisor is delegated to it" \
	"OK       events file /var/lib/example-bot/events.jsonl: /var/lib/example-bot is writable by example-bot"; do
	grep -qxF "$line" "$T/unitcheck.out" || fail "check --unit lacks: $line"
done
# the control: the same policy from this shell picks the systemd backend
op shellcheck check --policy /etc/claude-cage/example-bot.toml
grep -q '^OK       backend systemd: claude-cage.s cgroup /system.slice/vmtest.service is in no subtree delegated to it' "$T/shellcheck.out" ||
	fail "check from the shell: $(grep backend "$T/shellcheck.out")"

systemctl status --no-pager -l example-bot.service 2>&1 | capture example-bot-status
ps -o pid,user:12,cgroup:72,args -p "$(echo $main $sups $(pgrep -u example-bot sleep) | tr ' ' ',')" | capture example-bot-ps
claude-cage ps 2>&1 | capture example-bot-claude-cage-ps

# stop: everything goes
systemctl stop example-bot.service || fail "systemctl stop example-bot.service failed"
assert_eq "$(systemctl show -P ActiveState example-bot.service)" inactive "example-bot.service after stop"
wait_for 10 "the service's cgroup is removed" test ! -e "$svc"
[ -z "$(pgrep -u example-bot)" ] || fail "processes of example-bot left: $(pgrep -a -u example-bot | tr '\n' ';')"
[ -z "$(find "$CG" -type d -name 'example-bot-*')" ] || fail "cage cgroups left: $(find "$CG" -type d -name 'example-bot-*')"
note "exit events: $(jq -c 'select(.event == "exit") | [.cage, .reason, .status]' "$ev" | tr '\n' ' ')"
assert_eq "$(ev_count "$ev" exit)" 2 "exit events after systemctl stop"
for r in $(jq -r 'select(.event == "exit") | .reason' "$ev"); do
	# systemd sends SIGTERM to every process of the service at once: claude-cage sees its own
	# SIGTERM, its child's death or its parent's (the bot's) death first
	case $r in terminated | signaled | parent-died) ;; *) fail "exit reason after systemctl stop: $r" ;; esac
done

# The packaged metrics service, as root: the bot's two ends are still counted after its cages
# are gone, labelled with the user whose runs they are (the bot's tally is in its own state
# directory). Without the textfile directory the service does nothing (the control).
systemctl start claude-cage-metrics.service || fail "claude-cage-metrics.service failed without the textfile directory"
[ ! -e /var/lib/prometheus/node-exporter ] || fail "claude-cage-metrics.service made the textfile directory"
mkdir -p /var/lib/prometheus/node-exporter
systemctl start claude-cage-metrics.service || fail "claude-cage-metrics.service failed: $(journalctl -q -n 5 -u claude-cage-metrics.service | tr '\n' ' ')"
prom=/var/lib/prometheus/node-exporter/claude-cage.prom
grep '^claude_cage_bot_' "$prom" | capture example-bot-metrics
ends=$(awk '/^claude_cage_bot_ends_total\{bot="example-bot",user="example-bot",/ { s += $2 } END { print s + 0 }' "$prom")
assert_eq "$ends" 2 "claude_cage_bot_ends_total of example-bot after systemctl stop"
[ -z "$(ls /var/lib/prometheus/node-exporter/*.tmp 2>/dev/null)" ] || fail "the metrics service left its temporary file"
rm -rf /var/lib/prometheus
