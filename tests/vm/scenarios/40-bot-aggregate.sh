# [bot] memory-max=60M caps the bot's cages together: two cages (memory.max=50M each)
# allocating 40 MB each at the same time -> at least one OOM-killed, at the bot's limit (its
# line says so, and the bot cgroup's memory.events oom rises); one after the other, both fit.
# vmtest-timeout: 120

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-bot"

[bot]
memory-max = "60M"

[memory]
max = "50M"
swap-max = "0"
oom-group = true
P
# A third cage of the bot holds the bot's cgroup across the run, so that its memory.events can
# be read before and after: an OOM kill at the bot's limit raises the bot's own "oom".
cage_bg hold --policy "$T/policy.toml" -- sleep 1000
ph=$!
wait_event "$T/hold.events" start 20
bot=$(dirname "$(cage_dir "$T/hold.events")")
bot_oom() { sed -n 's/^oom //p' "$bot/memory.events"; }
oom0=$(bot_oom)
assert_num "$oom0" "the bot's memory.events oom before"
cage_bg a --policy "$T/policy.toml" -- alloc 40 4
pa=$!
cage_bg b --policy "$T/policy.toml" -- alloc 40 4
pb=$!
wait $pa
rca=$?
wait $pb
rcb=$?
note "together: a=$rca b=$rcb"
killed=0
for x in a:$rca b:$rcb; do
	tag=${x%%:*}
	r=${x#*:}
	case "$r" in
	137)
		check_exit "$T/$tag.events" "$r" 137 oom-killed
		# The cage's own limit (50M) was not reached: the line names the bot's.
		check_one_line "$T/$tag.err" "$T/$tag.events" \
			"killed by the kernel OOM killer at the bot's aggregate memory-max 60\.0 MiB \(peak [0-9]+\.[0-9] (KiB|MiB)\) after "
		assert_eq "$(ev_field "$T/$tag.events" exit oom-limit)" bot "$tag: exit event oom-limit"
		killed=$((killed + 1))
		;;
	0) check_exit "$T/$tag.events" "$r" 0 exited ;;
	*) fail "together: cage $tag exited $r, expected 0 or 137" ;;
	esac
	assert_eq "$(ev_field "$T/$tag.events" start bot-memory-max)" 62914560 "$tag: start limits bot-memory-max"
	check_gone "$T/$tag.events"
done
[ "$killed" -ge 1 ] || fail "together: 2 x 40 MB under bot memory-max=60M, nobody was OOM-killed"
oom1=$(bot_oom)
assert_num "$oom1" "the bot's memory.events oom after"
[ "$oom1" -gt "$oom0" ] || fail "together: the bot's memory.events oom did not rise ($oom0 -> $oom1)"
note "bot oom: $oom0 -> $oom1"
kill -TERM $ph
wait $ph
rch=$?
check_exit "$T/hold.events" "$rch" 143 terminated
check_gone "$T/hold.events" bot
check_no_dir vm-bot

cage c --policy "$T/policy.toml" -- alloc 40 1
check_exit "$T/c.events" "$rc" 0 exited
check_gone "$T/c.events" bot
cage d --policy "$T/policy.toml" -- alloc 40 1
check_exit "$T/d.events" "$rc" 0 exited
check_gone "$T/d.events" bot
check_no_proc alloc
