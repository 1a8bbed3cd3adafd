# `systemd-analyze verify` accepts every unit the package ships (the slice, the reap and metrics
# services and timers, the example bot service, whose ExecStart= names /usr/bin/claude-cage and
# whose bot is the stand-in /usr/bin/example-bot, and the quick start's ts-bot and py-bot), with
# no warning at all; the packaged hook is installed executable.
# vmtest-timeout: 60

units="/lib/systemd/system/claude-cage.slice /lib/systemd/system/claude-cage-reap.service /lib/systemd/system/claude-cage-reap.timer /lib/systemd/system/claude-cage-metrics.service /lib/systemd/system/claude-cage-metrics.timer"
# The example and the quick start's bots are verified where an admin would put them, copied as
# the quick start says.
examples="example-bot.service ts-bot.service py-bot.service"
for u in $examples; do
	cp "/usr/share/doc/claude-cage/packaging/systemd/$u" "/etc/systemd/system/$u"
done
systemd-analyze verify $units $(for u in $examples; do echo "/etc/systemd/system/$u"; done) >"$T/verify.out" 2>&1
rc=$?
for u in $examples; do rm -f "/etc/systemd/system/$u"; done
cat "$T/verify.out"
assert_eq "$rc" 0 "systemd-analyze verify: status"
[ -x /usr/lib/claude-cage/webhook ] || fail "the packaged hook /usr/lib/claude-cage/webhook is not executable"
[ ! -s "$T/verify.out" ] || fail "systemd-analyze verify printed: $(head -n 3 "$T/verify.out")"
# the loaded units carry what the files say
assert_eq "$(systemctl show -P LoadState claude-cage.slice)" loaded "claude-cage.slice LoadState"
assert_eq "$(systemctl show -P TasksMax claude-cage.slice)" 8192 "claude-cage.slice TasksMax"
assert_eq "$(systemctl show -P MemorySwapMax claude-cage.slice)" 0 "claude-cage.slice MemorySwapMax"
assert_eq "$(systemctl show -P ExecStart claude-cage-reap.service | grep -o 'argv\[\]=[^;]*' | sed 's/ *$//')" "argv[]=/usr/bin/claude-cage reap" "claude-cage-reap.service ExecStart"
assert_eq "$(systemctl show -P Unit claude-cage-reap.timer)" claude-cage-reap.service "claude-cage-reap.timer Unit"
