# `claude-cage kill`: a running cage is ended through its supervisor (exit 137, reason killed,
# one stderr line, cage and state file gone); --name kills every cage of a bot; an unknown cage
# or bot is an error (status 1); --signal USR1 reaches the processes in the cage and leaves it
# running.
# vmtest-timeout: 90

# kill CAGE
cage_bg one --name vm-kill -- sh -c 'spawntree 5 && exec alloc 1 1000'
p=$!
wait_event "$T/one.events" start 20
wait_match "$T/one.out" touched 20
id=$(cage_id "$T/one.events")
op k1 kill "$id"
assert_eq "$rc" 0 "kill $id: status"
cat "$T/k1.out" "$T/k1.err"
assert_eq "$(cat "$T/k1.out")" "killed cage $id" "kill $id: stdout"
[ ! -s "$T/k1.err" ] || fail "kill $id: unexpected stderr: $(head -n 2 "$T/k1.err")"
wait $p
rc=$?
check_exit "$T/one.events" "$rc" 137 killed
assert_eq "$(ev_field "$T/one.events" exit signal)" 9 "one: exit event signal"
assert_ge "$(ev_field "$T/one.events" exit leftover)" 5 "one: exit event leftover (the spawntree)"
check_one_line "$T/one.err" "$T/one.events" 'killed by an operator'
cat "$T/one.err"
check_gone "$T/one.events" bot
check_no_state "$id"
check_no_proc alloc
check_no_proc spawntree

# kill --name BOT: every cage of the bot, not the other bot's
cage_bg two1 --name vm-kill2 -- sleep 1000
p1=$!
cage_bg two2 --name vm-kill2 -- sleep 1000
p2=$!
cage_bg other --name vm-kill-other -- sleep 1000
po=$!
wait_event "$T/two1.events" start 20
wait_event "$T/two2.events" start 20
wait_event "$T/other.events" start 20
id1=$(cage_id "$T/two1.events")
id2=$(cage_id "$T/two2.events")
ido=$(cage_id "$T/other.events")
op k2 kill --name vm-kill2
assert_eq "$rc" 0 "kill --name vm-kill2: status"
cat "$T/k2.out"
assert_eq "$(wc -l <"$T/k2.out" | tr -d ' ')" 2 "kill --name vm-kill2: lines"
grep -qx "killed cage $id1" "$T/k2.out" || fail "kill --name: no line for $id1: $(cat "$T/k2.out")"
grep -qx "killed cage $id2" "$T/k2.out" || fail "kill --name: no line for $id2: $(cat "$T/k2.out")"
wait $p1
rc=$?
check_exit "$T/two1.events" "$rc" 137 killed
wait $p2
rc=$?
check_exit "$T/two2.events" "$rc" 137 killed
check_gone "$T/two1.events"
check_gone "$T/two2.events" bot
check_no_state "$id1" "$id2"
alive $po || fail "kill --name vm-kill2 ended the supervisor of bot vm-kill-other"
op ps ps --name vm-kill-other
assert_eq "$(ps_col "$T/ps.out" "$ido" STATE)" running "the other bot's cage after kill --name vm-kill2"

# unknown cage, unknown bot: status 1 and a message, nothing touched
op nosuch kill no-such-cage-1-1
cat "$T/nosuch.err"
assert_eq "$rc" 1 "kill no-such-cage-1-1: status"
grep -q 'no such cage: no-such-cage-1-1' "$T/nosuch.err" || fail "kill no-such-cage-1-1: stderr: $(cat "$T/nosuch.err")"
[ ! -s "$T/nosuch.out" ] || fail "kill no-such-cage-1-1: unexpected stdout: $(cat "$T/nosuch.out")"
op nobot kill --name vm-kill-nobody
cat "$T/nobot.err"
assert_eq "$rc" 1 "kill --name vm-kill-nobody: status"
grep -q 'no live cage of bot "vm-kill-nobody"' "$T/nobot.err" || fail "kill --name vm-kill-nobody: stderr: $(cat "$T/nobot.err")"
# a known and an unknown id: the known one is killed, the status is still 1
op mixed kill no-such-cage-1-1 "$ido"
assert_eq "$rc" 1 "kill no-such-cage-1-1 $ido: status"
assert_eq "$(cat "$T/mixed.out")" "killed cage $ido" "kill no-such-cage-1-1 $ido: stdout"
wait $po
rc=$?
check_exit "$T/other.events" "$rc" 137 killed
check_gone "$T/other.events" bot
check_no_state "$ido"

# kill --signal USR1: delivered to the processes in the cage, which keeps running
cat >"$T/trap.sh" <<'S'
trap 'echo "got USR1" >>"$1"' USR1
echo ready >>"$1"
while :; do sleep 0.2; done
S
cage_bg usr --name vm-kill-usr -- sh "$T/trap.sh" "$T/usr1.log"
pu=$!
wait_event "$T/usr.events" start 20
wait_match "$T/usr1.log" ready 20
idu=$(cage_id "$T/usr.events")
op sig kill --signal USR1 "$idu"
assert_eq "$rc" 0 "kill --signal USR1: status"
cat "$T/sig.out"
grep -qxE "sent SIGUSR1 to [0-9]+ process(es)? in cage $idu" "$T/sig.out" || fail "kill --signal USR1: stdout: $(cat "$T/sig.out")"
wait_match "$T/usr1.log" 'got USR1' 10
alive $pu || fail "the supervisor ended after kill --signal USR1"
op ps2 ps --name vm-kill-usr
assert_eq "$(ps_col "$T/ps2.out" "$idu" STATE)" running "cage state after kill --signal USR1"
assert_no_event "$T/usr.events" exit
# a signal name that does not exist: refused before anything is touched
op badsig kill --signal NOPE "$idu"
cat "$T/badsig.err"
[ "$rc" != 0 ] || fail "kill --signal NOPE: status 0"
grep -q 'unknown signal "NOPE"' "$T/badsig.err" || fail "kill --signal NOPE: stderr: $(cat "$T/badsig.err")"
alive $pu || fail "the supervisor ended after kill --signal NOPE"
op k3 kill "$idu"
assert_eq "$rc" 0 "kill $idu: status"
wait $pu
rc=$?
check_exit "$T/usr.events" "$rc" 137 killed
check_gone "$T/usr.events" bot
check_no_state "$idu"
