# [bot] memory-max=60M caps the bot's cages together: two cages (memory.max=50M each)
# allocating 40 MB each at the same time -> at least one OOM-killed; one after the other,
# both fit.
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
		check_one_line "$T/$tag.err" "$T/$tag.events" oom
		killed=$((killed + 1))
		;;
	0) check_exit "$T/$tag.events" "$r" 0 exited ;;
	*) fail "together: cage $tag exited $r, expected 0 or 137" ;;
	esac
	assert_eq "$(ev_field "$T/$tag.events" start bot-memory-max)" 62914560 "$tag: start limits bot-memory-max"
	check_gone "$T/$tag.events"
done
[ "$killed" -ge 1 ] || fail "together: 2 x 40 MB under bot memory-max=60M, nobody was OOM-killed"
check_no_dir vm-bot

cage c --policy "$T/policy.toml" -- alloc 40 1
check_exit "$T/c.events" "$rc" 0 exited
check_gone "$T/c.events" bot
cage d --policy "$T/policy.toml" -- alloc 40 1
check_exit "$T/d.events" "$rc" 0 exited
check_gone "$T/d.events" bot
check_no_proc alloc
