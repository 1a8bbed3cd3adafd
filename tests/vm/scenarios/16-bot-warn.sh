# [bot] memory-warn on the bot's aggregate: bot.memory-high 70M (the kernel's notice of the bot's
# own crossing), memory-warn 70M, memory-max 120M. Cage A holds 40 MB; cage B's 35 MB take the
# bot over 70M: one bot-memory-warn event among the two supervisors (the bot's usage, the
# threshold, its cages largest first), counted in the bot's metrics. Once B has ended (the bot
# back at 40 MB), cage C's 35 MB warn again: a second crossing, a second event. The control: a
# bot whose cages stay below the threshold (A alone) writes none.
# vmtest-timeout: 120

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-bw"

[memory]
swap-max = "0"

[bot]
memory-high = "70M"
memory-warn = "70M"
memory-max = "120M"
P
# bot_warns: the bot-memory-warn events in every events file of this scenario
bot_warns() { cat "$T"/*.events 2>/dev/null | grep -c '"event":"bot-memory-warn"'; }
warns_are() { [ "$(bot_warns)" = "$1" ]; }

cage_bg a --policy "$T/policy.toml" -- alloc 40 600
a=$!
wait_for 30 "cage a's allocation to be resident" test -s "$T/a.out"
# The control: A alone, far below the threshold.
assert_eq "$(bot_warns)" 0 "bot-memory-warn events with the bot at 40 MB"

cage b --policy "$T/policy.toml" -- alloc 35 2
check_exit "$T/b.events" "$rc" 0 exited
wait_for 10 "a bot-memory-warn event" warns_are 1
line=$(cat "$T"/*.events | grep '"event":"bot-memory-warn"')
note "$line"
cur=$(echo "$line" | sed -n 's/.*"bot-memory-current":\([0-9]*\).*/\1/p')
assert_ge "$cur" $((70 * 1048576)) "bot-memory-current"
assert_eq "$(echo "$line" | sed -n 's/.*"threshold":\([0-9]*\).*/\1/p')" $((70 * 1048576)) "threshold"
# The cages, largest first: A (40 MB) before B (35 MB).
first=$(echo "$line" | sed -n 's/.*"cages":\[{"cage":"\([^"]*\)","memory-current":\([0-9]*\)}.*/\1 \2/p')
assert_eq "${first% *}" "$(cage_id "$T/a.events")" "the largest cage"
assert_ge "${first#* }" $((38 * 1048576)) "the largest cage's memory-current"
echo "$line" | grep -q "\"cage\":\"$(cage_id "$T/b.events")\"" || fail "cage B is not among the cages: $line"

# B has ended: the bot is back at 40 MB, below 90% of the threshold, so C warns again.
cage c --policy "$T/policy.toml" -- alloc 35 2
check_exit "$T/c.events" "$rc" 0 exited
wait_for 10 "a second bot-memory-warn event" warns_are 2
claude-cage ps --format prometheus >"$T/metrics"
# (user: root's name, or its uid where there is no passwd)
grep -qE '^claude_cage_bot_memory_warns_total\{bot="vm-bw",user="[^"]+"\} 2$' "$T/metrics" ||
	fail "no bot memory-warn counter of 2: $(grep memory_warns "$T/metrics")"

kill -TERM "$a"
wait "$a"
check_exit "$T/a.events" "$?" 143 terminated
check_gone "$T/a.events" bot
