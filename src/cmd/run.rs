//! `claude-cage run` (and shim mode): the lifecycle of one cage, step by step —
//! prepare (`prepare`), create (`backend`), supervise (`supervise`), teardown (`teardown`),
//! report (`report`). Each step lives in the module of its name; this file only orders them.

use std::ffi::OsString;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::SigSet;
use nix::unistd::Pid;

use crate::alerts::Alerts;
use crate::backend::{Created, Request};
use crate::cgroup::Cage;
use crate::cli::RunArgs;
use crate::error::{RunError, error_chain};
use crate::events::{Event, Limits};
use crate::policy::{Overrides, Policy};
use crate::prepare::{self, Invocation, Plan, PolicySource};
use crate::report::End;
use crate::spawn::Pending;
use crate::state;
use crate::supervise::{self, Lifetime};
use crate::teardown;
use crate::units::Limit;

/// `claude-cage run`: the invocation from the command line.
pub fn run_cmd(a: RunArgs, starter: Pid) -> i32 {
    let original_mask = supervise::block_signals();
    let inv = Invocation {
        policy: a
            .policy
            .map(PolicySource::File)
            .unwrap_or(PolicySource::Default),
        overrides: Overrides {
            name: a.name,
            parent: a.parent,
            memory_high: a.memory_high,
            memory_max: a.memory_max,
            pids_max: a.pids_max,
            max_runtime: a.max_runtime,
            idle_timeout: a.idle_timeout,
            stdin_eof_grace: a.stdin_eof_grace,
            term_grace: a.term_grace,
            events: a.events,
        },
        program: a.command.first().cloned(),
        env_program: None,
        args: a.command.iter().skip(1).cloned().collect(),
        shim: false,
        starter,
    };
    run(inv, original_mask)
}

/// Shim mode: every argument goes to the program unchanged; the policy and the program come
/// from the environment and the policy search path.
pub fn shim(starter: Pid) -> i32 {
    let original_mask = supervise::block_signals();
    let inv = Invocation {
        policy: prepare::shim_policy(),
        overrides: Overrides::default(),
        program: None,
        env_program: std::env::var_os("CLAUDE_CAGE_PROGRAM").filter(|p| !p.is_empty()),
        args: std::env::args_os().skip(1).collect(),
        shim: true,
        starter,
    };
    run(inv, original_mask)
}

/// Runs the invocation and returns claude-cage's exit status.
pub fn run(inv: Invocation, original_mask: SigSet) -> i32 {
    match prepare::prepare(inv).and_then(|plan| cage_and_run(plan, original_mask)) {
        Ok(status) => status,
        Err(e) => {
            match e.advice() {
                Some(fix) => crate::error!("{}; {fix}", error_chain(&e)),
                None => crate::error!("{}", error_chain(&e)),
            }
            e.exit_status()
        }
    }
}

/// Create, supervise, teardown, report. From the first line on, no path may leave the cage
/// behind.
fn cage_and_run(plan: Plan, original_mask: SigSet) -> Result<i32, RunError> {
    let Plan {
        policy,
        name,
        path,
        command,
        credentials,
        backend,
        mut log,
        starter,
        signals,
    } = plan;
    // A slot below the bot's max-cages, held until this cage and its state file exist.
    let slot = crate::backend::slots::acquire(&backend, &name, &policy)?;
    let started = Instant::now();
    let Created {
        cage,
        pending,
        owner,
    } = backend.create(Request {
        name: &name,
        policy: &policy,
        path: &path,
        command: &command,
        original_mask,
        credentials,
    })?;
    // The state file is written while the child waits for its go, so that a program never
    // runs in a cage that `ps`, `kill` and `reap` cannot attribute.
    let argv: Vec<String> = command.iter().map(lossy).collect();
    let state_file = state::record(&state_record(&cage, &name, &policy, &pending, &argv));
    drop(slot);
    let child = match pending.release() {
        Ok(c) => c,
        Err(e) => {
            teardown::abandon(&cage, &owner, state_file.as_ref());
            return Err(e.into());
        }
    };
    if !cage.deferred.is_empty() {
        if let Err(e) = cage.enable_deferred() {
            crate::warning!("{}", error_chain(&e));
        }
    }
    log.set_cage(&cage.id, &name);
    log.emit(&Event::Start {
        pid: child.pid.as_raw(),
        cgroup: cage.dir.display().to_string(),
        program: path.display().to_string(),
        argv,
        limits: Limits::from(&cage.applied),
    });

    // The bot's limit hit before this cage existed is not this cage's.
    let bot_oom_before = cage.bot_oom();

    // Supervise.
    let (mut alerts, alert_warnings) = Alerts::arm(
        &policy.alerts,
        &cage,
        cage.applied.memory_high.and_then(Limit::bytes),
    );
    for w in alert_warnings {
        crate::warning!("{w}");
    }
    if let Some(threshold) = policy.bot_memory_warn {
        let high = cage.applied.bot_memory_high.and_then(Limit::bytes);
        if let Some(w) = alerts.arm_bot(&name, &cage.bot_dir, threshold, high) {
            crate::warning!("{w}");
        }
    }
    let lifetime = Lifetime {
        max_runtime: policy.max_runtime,
        stdin_eof_grace: policy.stdin_eof_grace,
        term_grace: policy.term_grace,
        idle: policy.idle_timeout.map(|t| (t, policy.idle_cpu)),
    };
    let outcome = supervise::supervise(
        &child,
        &cage,
        &signals,
        lifetime,
        starter,
        &mut alerts,
        &mut log,
    )
    .unwrap_or_else(|e| supervise::abandon(&child, &cage, &e));
    let duration = started.elapsed();
    // The line and the exit event name the limits the cage had at its end, which
    // `claude-cage set` may have changed: read before the teardown removes the files.
    let mut applied = cage.applied.clone();
    applied.refresh(&cage.dir, &cage.bot_dir);

    // Teardown.
    let ended = teardown::finish(
        &cage,
        &owner,
        outcome,
        child.pid,
        &mut alerts,
        state_file.as_ref(),
    );

    // Report.
    let report = End {
        outcome: &ended.outcome,
        counters: ended.counters,
        bot_oom: ended.bot_oom.saturating_sub(bot_oom_before),
        peak: ended.peak,
        duration,
        policy: &policy,
        applied: &applied,
    }
    .report();
    // The bot's counters outlive the cage (metrics a scrape later still show this end).
    if let Err(e) = crate::tally::add(
        &name,
        report.reason.as_str(),
        report.record.oom_kills,
        report.record.oom_limit.map(|l| l.as_str()),
    ) {
        crate::warning!("failed to count the end in the bot's tally: {e}");
    }
    let exit_line = log.emit(&Event::Exit(report.record));
    if let Some(line) = &report.line {
        crate::error!("{}: {line}", cage.id);
    }
    // The hook hears of an abnormal end; claude-cage waits for every hook (each bounded by
    // its timeout) so that none is left behind.
    alerts.finish(
        report
            .line
            .is_some()
            .then_some((exit_line, report.reason.as_str())),
    );
    Ok(report.status)
}

/// What the state file says of the cage: what the kernel does not know.
fn state_record(
    cage: &Cage,
    bot: &str,
    policy: &Policy,
    pending: &Pending,
    argv: &[String],
) -> state::Record {
    state::Record {
        cage: cage.id.clone(),
        bot: bot.to_owned(),
        cgroup: cage.dir.clone(),
        supervisor_pid: std::process::id() as i32,
        supervisor_start: state::start_time(Pid::this()).unwrap_or(0),
        child_pid: pending.pid.as_raw(),
        policy: policy.source.clone(),
        argv: argv.to_vec(),
        started_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        events: policy.events_file.clone(),
        max_cages: policy.max_cages,
    }
}

fn lossy(a: &OsString) -> String {
    a.to_string_lossy().into_owned()
}
