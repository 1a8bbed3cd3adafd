# The quick start (docs/quickstart.md) as a newcomer follows it: its policies, bots and units
# copied unchanged from /usr/share/doc/claude-cage, its commands run as written, with three
# differences only: the SDKs were installed into the image (`npm install`, `pip install`: the
# guest has no network), the webhook URL is a local listener, and each bot's environment file
# points Claude Code at a local stand-in Messages API. The TypeScript bot and the Python bot run
# as services with the real Agent SDKs and the real Claude Code. (tests/docs.rs checks that the
# guide's commands are the ones run here.) The TypeScript bot's Claude Code
# runs a tool that holds 300 MB; the operator lowers the live cage's memory.max to 200M
# (`claude-cage set`), and the kernel OOM-kills that cage. Then: the SDK's error in the bot's
# journal carries claude-cage's line, the events file the exit event with `oom-limit` cage, the
# webhook the oom-kill and exit events, and the metrics the bot's OOM end after the cage is
# gone; the Python bot's child, running all along, is untouched and its query ends normally.
# `systemctl stop` leaves nothing behind.
# vmtest-timeout: 480

d=/usr/share/doc/claude-cage
B=$T/bots
mkdir -p "$B"
cleanup() {
	systemctl disable --now ts-bot.service py-bot.service 2>/dev/null
	[ -n "${serve:-}" ] && kill -TERM "$serve" 2>/dev/null && wait "$serve" 2>/dev/null
	return 0
}
trap cleanup EXIT
on_fail() {
	for b in ts-bot py-bot; do
		echo "--- journal of $b.service"
		journalctl -q --no-pager -u "$b.service" | tail -n 30
		echo "--- events of $b"
		tail -n 20 "/var/log/claude-cage/$b/events.jsonl" 2>/dev/null
	done
	echo "--- stand-in requests"
	tail -n 20 "$B"/*.requests 2>/dev/null
	echo "--- webhook"
	cat "$B/hook.jsonl" 2>/dev/null
	claude-cage ps 2>&1
}

# The stand-ins. ts-bot's Claude Code runs `alloc 300 600` (300 MB, held); py-bot's `alloc 20 60` (20 MB for a minute).
node /vmtest/bots/serve.mjs "$B" \
	'ts=[{"bash":"alloc 300 600 && echo alloc-survived","description":"allocate 300 MB","timeout":600000},{"text":"ts-bot survived"}]' \
	'py=[{"bash":"alloc 20 60 && echo py-survived","description":"hold 20 MB for a minute","timeout":600000},{"text":"py-bot done"}]' \
	>"$B/serve.log" 2>&1 &
serve=$!
wait_for 60 "the stand-ins to listen ($(cat "$B/serve.log" 2>/dev/null))" test -s "$B/ports"
port() { sed -n "s/^$1 //p" "$B/ports"; }

# --- 2. One policy per bot (as written; the webhook URL is the listener's)
mkdir -p /etc/claude-cage
install -m 0644 $d/policies/ts-bot.toml $d/policies/py-bot.toml /etc/claude-cage/
useradd --system --home-dir /var/lib/ts-bot --shell /usr/sbin/nologin ts-bot
useradd --system --home-dir /var/lib/py-bot --shell /usr/sbin/nologin py-bot
for b in ts-bot py-bot; do
	echo "WEBHOOK_URL=http://127.0.0.1:$(port hook)/$b" >/etc/claude-cage/$b.webhook
	chown root:$b /etc/claude-cage/$b.webhook && chmod 0640 /etc/claude-cage/$b.webhook
done

# --- 3. The bots (npm install and pip install were made in the image)
claude-cage install-shim /usr/local/lib/claude-cage >"$T/shim.out" 2>&1 || fail "install-shim: $(cat "$T/shim.out")"
install -d /opt/ts-bot /opt/py-bot /etc/ts-bot /etc/py-bot
install -m 0644 $d/packaging/bots/ts-bot/bot.mjs /opt/ts-bot/
install -m 0644 $d/packaging/bots/py-bot/bot.py /opt/py-bot/
for b in ts-bot py-bot; do
	p=$(port "${b%-bot}")
	printf '%s\n' 'ANTHROPIC_API_KEY=sk-ant-test' "ANTHROPIC_BASE_URL=http://127.0.0.1:$p" \
		CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 'BOT_PROMPT=Run the command.' >/etc/$b/env
	chmod 0600 /etc/$b/env
done

# --- 4. One unit per bot
install -m 0644 $d/packaging/systemd/ts-bot.service $d/packaging/systemd/py-bot.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now ts-bot.service py-bot.service

# --- 5. Check inside the service
claude-cage check --unit ts-bot.service --policy /etc/claude-cage/ts-bot.toml >"$T/check.out" 2>&1
rc=$?
capture quickstart-check <"$T/check.out"
[ "$rc" = 0 ] || fail "check --unit ts-bot.service: status $rc: $(grep -A1 PROBLEM "$T/check.out" | joined)"

# Both bots' Claude Code children are at work: ts-bot's allocation is resident, py-bot's sleep runs.
ts_cg=$CG/system.slice/ts-bot.service/ts-bot
py_cg=$CG/system.slice/py-bot.service/py-bot
# in_cage CGROUP PATTERN: the pid of a process matching PATTERN (pgrep -f) in a cage below CGROUP
in_cage() {
	local p
	for p in $(pgrep -f "$2"); do
		case "$(cgroup_of "$p")" in "${1#"$CG"}"/*) echo "$p" && return 0 ;; esac
	done
	return 1
}
resident() {
	local p
	p=$(in_cage "$ts_cg" '^alloc 300 600') || return 1
	[ "$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)" -ge 300000 ]
}
wait_for 240 "ts-bot's Claude Code to run alloc 300 600 (resident) in a cage" resident
wait_for 120 "py-bot's Claude Code to run alloc 20 60 in a cage" in_cage "$py_cg" '^alloc 20 60'
py_alloc=$(in_cage "$py_cg" '^alloc 20 60')
ts_alloc=$(in_cage "$ts_cg" '^alloc 300 600')
rel=$(cgroup_of "$ts_alloc")
rel=${rel#"${ts_cg#"$CG"}"/}
ts_cage=${rel%%/*}
note "ts-bot cage $ts_cage (alloc $ts_alloc), py-bot's alloc $py_alloc"
claude-cage ps >"$T/ps.out" 2>&1
capture quickstart-ps <"$T/ps.out"

# --- the operator forces the OOM: the live cage's memory.max below what it holds
claude-cage set "$ts_cage" --memory-high 150M --memory-max 200M >"$T/set.out" 2>&1 ||
	fail "set: $(cat "$T/set.out")"

# --- 6. What the operator sees
ev=/var/log/claude-cage/ts-bot/events.jsonl
query_failed() { journalctl -q --no-pager -u ts-bot.service -o cat | grep -q '^query failed: '; }
wait_for 60 "ts-bot's query to fail" query_failed
line=$(journalctl -q --no-pager -u ts-bot.service -o cat | grep '^query failed: ' | head -n 1)
note "$line"
capture quickstart-ts-bot-journal <<<"$line"
case "$line" in
"query failed: Claude Code process exited with code 137. stderr: "*"claude-cage: $ts_cage: killed by the kernel OOM killer at memory.max 200.0 MiB "*) ;;
*) fail "ts-bot's error does not end with claude-cage's OOM line for $ts_cage: $line" ;;
esac
exit_line=$(grep "\"cage\":\"$ts_cage\"" "$ev" | grep '"event":"exit"')
note "$exit_line"
capture quickstart-ts-bot-exit <<<"$exit_line"
assert_eq "$(echo "$exit_line" | jq -r .reason)" oom-killed "ts-bot exit reason"
assert_eq "$(echo "$exit_line" | jq -r .status)" 137 "ts-bot exit status"
assert_eq "$(echo "$exit_line" | jq -r '.["oom-limit"]')" cage "ts-bot exit oom-limit"
grep "\"cage\":\"$ts_cage\"" "$ev" | grep -q '"event":"limits-changed"' || note "no limits-changed event (the OOM kill came first)"
# The webhook heard of the OOM kill and of the end.
hooked() { grep -q '"event":"exit"' "$B/hook.jsonl" 2>/dev/null && grep -q '"event":"oom-kill"' "$B/hook.jsonl"; }
wait_for 30 "the webhook to receive the oom-kill and exit events" hooked
grep '"event":"exit"' "$B/hook.jsonl" | grep -q "oom-killed" || fail "the webhook's exit event is not oom-killed: $(cat "$B/hook.jsonl")"
grep -q '\\"bot\\":\\"py-bot\\"' "$B/hook.jsonl" && fail "the webhook heard of py-bot: $(cat "$B/hook.jsonl")"
# The cage is gone; the metrics still count its end.
[ ! -d "$ts_cg/$ts_cage" ] || fail "the OOM-killed cage $ts_cg/$ts_cage is still there"
claude-cage ps --format prometheus >"$T/metrics" 2>&1
grep -qx 'claude_cage_bot_oom_ends_total{bot="ts-bot",user="ts-bot",limit="cage"} 1' "$T/metrics" ||
	fail "no per-bot OOM end in the metrics: $(grep 'bot="ts-bot"' "$T/metrics" | joined)"
grep -qx 'claude_cage_bot_ends_total{bot="ts-bot",user="ts-bot",reason="oom-killed"} 1' "$T/metrics" ||
	fail "no per-bot oom-killed end in the metrics: $(grep 'bot="ts-bot"' "$T/metrics" | joined)"
grep 'bot="ts-bot"' "$T/metrics" | capture quickstart-metrics

# The other bot: its child lived through it, and its query ends normally.
alive "$py_alloc" || fail "py-bot's alloc $py_alloc did not live through ts-bot's OOM kill"
py_done() { journalctl -q --no-pager -u py-bot.service -o cat | grep -q '^result: '; }
wait_for 120 "py-bot's query to end" py_done
assert_eq "$(journalctl -q --no-pager -u py-bot.service -o cat | grep '^result: ' | head -n 1)" "result: py-bot done" "py-bot's result"
# The SDK logs the result before it closes Claude Code's input; the cage's exit event is
# written when its child has ended, so it is read once the service (claude-cage with it) has.
wait_for 30 "py-bot.service to end" sh -c '! systemctl is-active -q py-bot.service'
assert_eq "$(systemctl show -p Result --value py-bot.service)" success "py-bot.service Result"
py_exit=$(grep '"event":"exit"' /var/log/claude-cage/py-bot/events.jsonl | head -n 1)
assert_eq "$(echo "$py_exit" | jq -r .reason)" exited "py-bot exit reason"
assert_eq "$(echo "$py_exit" | jq -r .status)" 0 "py-bot exit status"
grep -q '"event":"oom-kill"' /var/log/claude-cage/py-bot/events.jsonl && fail "py-bot saw an OOM kill"

# Stop: nothing of either bot is left.
systemctl stop ts-bot.service py-bot.service
for c in "$ts_cg" "$py_cg"; do
	[ -z "$(find "$c" -mindepth 1 -type d 2>/dev/null)" ] || fail "cages left in $c: $(find "$c" -mindepth 1 -type d | joined)"
done
left=$(pgrep -u ts-bot,py-bot -a | joined)
[ -z "$left" ] || fail "processes of the bots' users left: $left"
