//! `kiln-agent`: applies the VM's context at boot.
//!
//! ```text
//! kiln-agent run [--stage local|final|all] [--root DIR] [--device FILE]...
//!                [--cmdline TEXT] [--metadata-url URL] [--device-wait SECS]
//!                [--metadata-wait SECS] [--no-network]
//! kiln-agent status [--root DIR] [--json]
//! ```
//!
//! Exit codes: 0 all went well (or there was no context), 1 a step failed
//! (the others still ran), 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kiln_agent::context::{self, Found};
use kiln_agent::files::write_atomic;
use kiln_agent::log;
use kiln_agent::online::Network;
use kiln_agent::root::Root;
use kiln_agent::sources::{self, Search};
use kiln_agent::state::{State, Status};
use kiln_agent::steps::{Env, Stage, run_stage};

/// Where the local stage leaves what it found for the final stage.
const FOUND: &str = "/run/kiln-agent/found.json";
/// Left by the local stage when the context asks nothing of the final
/// stage; kiln-agent.service is not started then (ConditionPathExists=!).
const FINAL_NOT_NEEDED: &str = "/run/kiln-agent/final-not-needed";

const USAGE: &str = "usage: kiln-agent run [--stage local|final|all] [--root DIR] [--device FILE]... [--cmdline TEXT]
                      [--metadata-url URL] [--device-wait SECS] [--metadata-wait SECS] [--no-network]
       kiln-agent status [--root DIR] [--json]
       kiln-agent --version";

struct RunArgs {
    stages: Vec<Stage>,
    root: Root,
    devices: Vec<PathBuf>,
    cmdline: Option<String>,
    metadata_url: Option<String>,
    device_wait: Option<Duration>,
    metadata_wait: Option<Duration>,
    network: bool,
}

fn seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{value:?} is not a number of seconds"))
}

fn parse_run(args: &[String]) -> Result<RunArgs, String> {
    let mut run = RunArgs {
        stages: vec![Stage::Local, Stage::Final],
        root: Root::new("/"),
        devices: Vec::new(),
        cmdline: None,
        metadata_url: None,
        device_wait: None,
        metadata_wait: None,
        network: true,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--stage" => {
                run.stages = match value()?.as_str() {
                    "local" => vec![Stage::Local],
                    "final" => vec![Stage::Final],
                    "all" => vec![Stage::Local, Stage::Final],
                    other => return Err(format!("unknown stage {other:?}")),
                }
            }
            "--root" => run.root = Root::new(value()?),
            "--device" => run.devices.push(PathBuf::from(value()?)),
            "--cmdline" => run.cmdline = Some(value()?),
            "--metadata-url" => run.metadata_url = Some(value()?),
            "--device-wait" => run.device_wait = Some(seconds(&value()?)?),
            "--metadata-wait" => run.metadata_wait = Some(seconds(&value()?)?),
            "--no-network" => run.network = false,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(run)
}

fn search(run: &RunArgs) -> Search {
    let cmdline = run.cmdline.clone().unwrap_or_else(|| {
        let path = if run.root.is_live() {
            PathBuf::from("/proc/cmdline")
        } else {
            run.root.at("/proc/cmdline")
        };
        std::fs::read_to_string(path).unwrap_or_default()
    });
    let from_line = |key: &str| sources::cmdline_value(&cmdline, key).map(str::to_string);
    Search {
        root: run.root.clone(),
        devices: run.devices.clone(),
        device_wait: run
            .device_wait
            .or_else(|| from_line("kiln.wait").and_then(|v| seconds(&v).ok()))
            .unwrap_or(Duration::from_secs(1)),
        metadata_url: run
            .metadata_url
            .clone()
            .or_else(|| from_line("kiln.metadata"))
            .unwrap_or_else(|| sources::DEFAULT_METADATA.to_string()),
        metadata_wait: run
            .metadata_wait
            .or_else(|| from_line("kiln.metadata_wait").and_then(|v| seconds(&v).ok()))
            .unwrap_or(Duration::from_secs(10)),
        cmdline,
    }
}

fn save_found(root: &Root, found: &Found) {
    let text = serde_json::to_vec(found).expect("plain data serializes");
    if let Err(e) = write_atomic(&root.at(FOUND), &text, 0o600, None) {
        log::warn(&format!("cannot keep the context for the final stage: {e}"));
    }
}

fn load_found(root: &Root) -> Option<Found> {
    let bytes = std::fs::read(root.at(FOUND)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn run(args: RunArgs) -> ExitCode {
    let started = Instant::now();
    let search = search(&args);
    let state = State::new(&args.root);
    let network = Network::new(&args.root);
    let local_only = args.stages == [Stage::Local];
    if local_only {
        let _ = std::fs::remove_file(args.root.at(FINAL_NOT_NEEDED));
    }
    let mut stages = args.stages.clone();
    let found = if args.stages.contains(&Stage::Local) {
        sources::find_local(&search)
    } else {
        load_found(&args.root).or_else(|| sources::find_local(&search))
    };
    let found = match found {
        Some(found) => Some(found),
        None if local_only || !args.network => None,
        None => {
            network.wait_online();
            let found = sources::find_network(&search);
            // A context that came over the network still needs the local steps.
            if found.is_some() && !stages.contains(&Stage::Local) {
                stages.insert(0, Stage::Local);
            }
            found
        }
    };
    let Some(found) = found else {
        log::info(&format!(
            "no context found ({} ms); nothing to do",
            started.elapsed().as_millis()
        ));
        return ExitCode::SUCCESS;
    };
    log::info(&format!(
        "context from {} ({} ms)",
        found.origin,
        started.elapsed().as_millis()
    ));
    if local_only {
        save_found(&args.root, &found);
    }
    let context = match context::interpret(&found) {
        Ok(context) => context,
        Err(e) => {
            log::warn(&format!(
                "cannot read the context from {}: {e}",
                found.origin
            ));
            return ExitCode::from(1);
        }
    };
    for warning in &context.warnings {
        log::warn(warning);
    }
    let mut status: Status = state.status();
    let previous = state.get("instance-id");
    if previous.as_deref() != Some(context.instance_id.as_str()) {
        log::info(&format!(
            "instance {} (was {})",
            context.instance_id,
            previous.as_deref().unwrap_or("none")
        ));
        if let Err(e) = state.set("instance-id", &context.instance_id) {
            log::warn(&e);
        }
        status.steps.clear();
        status.stages.clear();
    }
    if local_only && !context.needs_final_stage() {
        skip_final_stage(&args.root, &mut status);
    }
    status.instance_id = Some(context.instance_id.clone());
    status.source = Some(found.origin.clone());
    status.warnings = context.warnings.clone();
    let env = Env {
        root: &args.root,
        context: &context,
        found: &found,
        state: &state,
        network: &network,
    };
    let mut failed = false;
    for stage in stages {
        let stage_started = Instant::now();
        for (name, record) in run_stage(stage, &env) {
            failed |= record.outcome == "failed";
            match status.steps.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = record,
                None => status.steps.push((name, record)),
            }
        }
        status.stages.insert(
            stage.name().to_string(),
            stage_started.elapsed().as_millis() as u64,
        );
    }
    if let Err(e) = state.save_status(&status) {
        log::warn(&format!("cannot save the status: {e}"));
    }
    log::info(&format!(
        "done in {} ms, {} ms of it on the CPU",
        started.elapsed().as_millis(),
        cpu_millis()
    ));
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Tells systemd not to start the final stage: each of its steps would
/// only have said "skipped", and a process started for nothing costs a
/// busy boot a noticeable slice of its one CPU under emulation. Its records
/// from an earlier boot go, so `kiln-agent status` shows this boot's.
fn skip_final_stage(root: &Root, status: &mut Status) {
    let final_stage = Stage::Final.name();
    match write_atomic(&root.at(FINAL_NOT_NEEDED), b"", 0o644, None) {
        Ok(()) => {
            log::info("final stage: nothing to do, not started");
            status
                .steps
                .retain(|(_, record)| record.stage != final_stage);
            status.stages.remove(final_stage);
        }
        Err(e) => log::warn(&format!("the final stage will run for nothing: {e}")),
    }
}

/// CPU time used so far by the agent and the commands it ran: under a busy
/// boot the wall clock also counts the other services' turns.
fn cpu_millis() -> u64 {
    let used = |who| {
        // SAFETY: getrusage fills the struct it is given and nothing else.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut usage) } != 0 {
            return 0;
        }
        let millis = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
        millis(usage.ru_utime) + millis(usage.ru_stime)
    };
    used(libc::RUSAGE_SELF) + used(libc::RUSAGE_CHILDREN)
}

fn status(args: &[String]) -> Result<ExitCode, String> {
    let mut root = Root::new("/");
    let mut json = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--root" => root = Root::new(iter.next().ok_or("--root needs a value")?),
            "--json" => json = true,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let status = State::new(&root).status();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("plain data serializes")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(instance) = &status.instance_id else {
        println!("no context applied yet");
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "instance {instance} from {}",
        status.source.as_deref().unwrap_or("?")
    );
    for (stage, millis) in &status.stages {
        println!("stage {stage}: {millis} ms");
    }
    for (name, record) in &status.steps {
        println!(
            "{:<22} {:<6} {:<8} {:>6} ms  {}",
            name, record.stage, record.outcome, record.millis, record.detail
        );
    }
    for warning in &status.warnings {
        println!("warning: {warning}");
    }
    let failed = status.steps.iter().any(|(_, r)| r.outcome == "failed");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => parse_run(&args[1..]).map(run),
        Some("status") => status(&args[1..]),
        Some("--version" | "-V") => {
            println!("kiln-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err("expected a command".to_string()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("kiln-agent: {e}\n{USAGE}");
        ExitCode::from(2)
    })
}
