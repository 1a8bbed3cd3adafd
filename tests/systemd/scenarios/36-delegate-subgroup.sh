# The packaged example unit with its documented systemd >= 254 edit: DelegateSubgroup=supervisor
# uncommented and ExecStart= without `claude-cage subgroup --`. On systemd 254 and later (Debian
# trixie: 257) systemd itself starts the bot in example-bot.service/supervisor and marks the
# service's cgroup delegated: the cages go in example-bot.service/example-bot/<cage> with their
# limits, `check --unit` says so, and `systemctl stop` leaves nothing. On older systemd (bookworm:
# 252) the key is unknown, the bot starts in the service's top cgroup, and claude-cage refuses
# (125) with the line that names both ways out, rather than making its cages outside the
# delegated subtree.
# vmtest-timeout: 120

svc=$CG/system.slice/example-bot.service
ev=/var/lib/example-bot/events.jsonl
sed -e 's|^#DelegateSubgroup=supervisor$|DelegateSubgroup=supervisor|' \
	-e 's|^ExecStart=/usr/bin/claude-cage subgroup -- /usr/bin/example-bot$|ExecStart=/usr/bin/example-bot|' \
	/usr/share/doc/claude-cage/packaging/systemd/example-bot.service >/etc/systemd/system/example-bot.service
grep -qx 'DelegateSubgroup=supervisor' /etc/systemd/system/example-bot.service || fail "the unit has no DelegateSubgroup=supervisor line to uncomment"
grep -qx 'ExecStart=/usr/bin/example-bot' /etc/systemd/system/example-bot.service || fail "the unit's ExecStart= is not the one documented"
example_bot_policy
trap example_bot_cleanup EXIT
on_fail() {
	journalctl -q -n 40 -u example-bot.service
	find "$svc" -type d 2>/dev/null | while read -r d; do echo "$d: procs $(tr '\n' ' ' <"$d/cgroup.procs")"; done
}
version=$(systemctl --version | awk 'NR == 1 { print $2 }')
note "systemd $version"
systemctl daemon-reload
# the journal from here on (30-example-bot ran the same unit before)
cursor=$(journalctl -q -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
systemctl start example-bot.service || fail "systemctl start example-bot.service failed: $(journalctl -q -n 5 -u example-bot.service | joined)"
main=$(systemctl show -P MainPID example-bot.service)

if [ "$version" -ge 254 ]; then
	assert_eq "$(systemctl show -P DelegateSubgroup example-bot.service)" supervisor "DelegateSubgroup"
	assert_eq "$(cgroup_of "$main")" /system.slice/example-bot.service/supervisor "the bot's cgroup (systemd put it there)"
	two_starts() { [ "$(ev_count "$ev" start)" -ge 2 ]; }
	wait_for 30 "two start events in $ev" two_starts
	for id in $(jq -r 'select(.event == "start") | .cage' "$ev"); do
		dir=$(jq -r --arg c "$id" 'select(.event == "start" and .cage == $c) | .cgroup' "$ev")
		assert_eq "$dir" "$svc/example-bot/$id" "cgroup of cage $id"
		assert_eq "$(cat "$dir/memory.max")" 67108864 "$id memory.max"
		assert_eq "$(cat "$dir/pids.max")" 32 "$id pids.max"
	done
	op unitcheck check --unit example-bot.service --policy /etc/claude-cage/example-bot.toml
	assert_eq "$rc" 0 "check --unit example-bot.service: status ($(grep -A1 PROBLEM "$T/unitcheck.out" | joined))"
	grep -qxF "OK       backend cgroupfs: the parent of claude-cage's cgroup /system.slice/example-bot.service/supervisor is delegated to it" "$T/unitcheck.out" ||
		fail "check --unit: $(grep backend "$T/unitcheck.out")"
	systemctl stop example-bot.service || fail "systemctl stop failed"
	wait_for 10 "the service's cgroup is removed" test ! -e "$svc"
	assert_eq "$(ev_count "$ev" exit)" 2 "exit events after systemctl stop"
else
	refused() {
		journalctl -q -u example-bot.service --after-cursor "$cursor" -o cat >"$T/journal"
		[ "$(grep -c '^claude-cage: ' "$T/journal")" -ge 2 ]
	}
	wait_for 30 "both runs of the bot to be refused" refused
	grep '^claude-cage: ' "$T/journal" | head -n 1 | capture delegate-subgroup-252
	grep -q "^claude-cage: cannot place cages: claude-cage runs at the top of its delegated cgroup /system.slice/example-bot.service, .*DelegateSubgroup=supervisor (systemd 254 or later; before 254, start the bot with ExecStart=claude-cage subgroup -- BOT-COMMAND)" "$T/journal" ||
		fail "the refusal does not name both ways out: $(grep '^claude-cage: ' "$T/journal" | head -n 1)"
	[ "$(ev_count "$ev" start 2>/dev/null || echo 0)" = 0 ] || fail "a cage started: $(head -n 1 "$ev")"
	systemctl stop example-bot.service
fi
[ -z "$(pgrep -u example-bot)" ] || fail "processes of example-bot left: $(pgrep -a -u example-bot | joined)"
[ -z "$(find "$CG" -type d -name 'example-bot-*')" ] || fail "cage cgroups left: $(find "$CG" -type d -name 'example-bot-*')"
