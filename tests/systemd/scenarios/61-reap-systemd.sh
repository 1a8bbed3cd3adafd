# An orphaned systemd-backend cage: its supervisor SIGKILLed while a setsid'd grandchild keeps
# the scope populated, the scope stays; `systemctl start claude-cage-reap.service` (by hand)
# kills it: the grandchild is dead, the scope and the state file are gone.
# vmtest-timeout: 90

systemd_policy "$T/p.toml" reap-sd '[memory]' 'max = "64M"'
cage_bg o --policy "$T/p.toml" -- sh -c 'setsid sleep 611 </dev/null >/dev/null 2>&1 & exec sleep 610'
sup=$!
wait_event "$T/o.events" start 20
id=$(cage_id "$T/o.events")
scope=$(scope_of "$T/o.events")
wait_for 10 "the setsid'd grandchild runs" pgrep -f '^sleep 611'
gc=$(pgrep -f '^sleep 611')
# no pids.max in the policy: the start event says none, and the scope must not have one either
# (systemd would otherwise apply its DefaultTasksMax= to the scope)
assert_eq "$(ev_field "$T/o.events" start limits | jq -r '.["pids-max"]')" null "start event limits.pids-max"
later assert_eq "$(unit_prop "$scope" TasksMax)" infinity "$scope TasksMax without pids.max in the policy"
child=$(ev_field "$T/o.events" start pid)
kill -KILL "$sup"
wait "$sup"
wait_for 10 "the child $child dies of its parent-death signal" dead "$child"
alive "$gc" || fail "the grandchild died with the supervisor: nothing to reap"
assert_eq "$(systemctl show -P ActiveState "$scope")" active "$scope after the supervisor's death"
op ps ps
cat "$T/ps.out" "$T/ps.err"
capture orphan-ps <"$T/ps.out"
grep -E "^$id " "$T/ps.out" | grep -qw orphaned || fail "claude-cage ps does not show $id as orphaned: $(cat "$T/ps.out" | tr '\n' ' ')"

since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl start claude-cage-reap.service || fail "systemctl start claude-cage-reap.service failed: $(journalctl -q -n 5 -u claude-cage-reap.service | tr '\n' ' ')"
journalctl -q --no-pager -u claude-cage-reap.service --since "$since" >"$T/journal"
cat "$T/journal"
wait_for 10 "the grandchild is dead after reap" dead "$gc"
check_no_units
[ ! -e "$CG$(bot_cg reap-sd)/$scope" ] || fail "the scope's cgroup is left"
[ ! -e "$STATE_DIR/$id.json" ] || fail "state file left: $STATE_DIR/$id.json"
grep -qF "reaped orphaned cage $id" "$T/journal" || fail "the journal of claude-cage-reap.service does not say it reaped $id: $(tail -n 2 "$T/journal")"
