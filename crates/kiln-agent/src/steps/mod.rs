//! The steps, their stage and frequency, and the runner that times them,
//! keeps going past failures and records everything in the status.
//!
//! Stage `local` runs before the network is configured (systemd:
//! `kiln-agent-local.service`, before network-pre.target); stage `final`
//! once the network is being configured (`kiln-agent.service`, after
//! network.target). Steps that reach out wait for the network themselves
//! ([`crate::online`]).

mod cm;
mod network;
mod report;
mod scripts;
mod system;
mod users;
mod writefiles;

use std::time::{Instant, SystemTime};

use crate::context::{Context, Found};
use crate::log;
use crate::online::Network;
use crate::root::Root;
use crate::state::{State, StepRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Local,
    Final,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Local => "local",
            Stage::Final => "final",
        }
    }
}

/// How often a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// Every boot (the step is idempotent).
    Boot,
    /// Once per instance id.
    Instance,
}

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Applied(String),
    /// Nothing to do, and why.
    Skipped(String),
}

/// What steps get.
pub struct Env<'a> {
    pub root: &'a Root,
    pub context: &'a Context,
    pub found: &'a Found,
    pub state: &'a State,
    pub network: &'a Network,
}

type StepFn = fn(&Env<'_>) -> Result<Done, String>;

pub struct Step {
    pub name: &'static str,
    pub stage: Stage,
    pub frequency: Frequency,
    run: StepFn,
}

const fn step(name: &'static str, stage: Stage, frequency: Frequency, run: StepFn) -> Step {
    Step {
        name,
        stage,
        frequency,
        run,
    }
}

/// Every step in the order it runs (cloud-init's order: the disk and the
/// system first, then accounts and files, then commands; deferred files
/// after the users exist).
pub const STEPS: &[Step] = &[
    step(
        "grow-root",
        Stage::Local,
        Frequency::Boot,
        system::grow_root,
    ),
    step("hostname", Stage::Local, Frequency::Boot, system::hostname),
    step(
        "timezone",
        Stage::Local,
        Frequency::Instance,
        system::timezone,
    ),
    step("network", Stage::Local, Frequency::Boot, network::apply),
    step("users", Stage::Local, Frequency::Boot, users::users),
    step(
        "passwords",
        Stage::Local,
        Frequency::Instance,
        users::passwords,
    ),
    step("ssh-keys", Stage::Local, Frequency::Boot, users::ssh_keys),
    step(
        "write-files",
        Stage::Local,
        Frequency::Instance,
        writefiles::now,
    ),
    step(
        "write-files-deferred",
        Stage::Final,
        Frequency::Instance,
        writefiles::deferred,
    ),
    step("runcmd", Stage::Final, Frequency::Instance, scripts::runcmd),
    step(
        "user-scripts",
        Stage::Final,
        Frequency::Instance,
        scripts::user_scripts,
    ),
    step(
        "start-scripts",
        Stage::Final,
        Frequency::Boot,
        scripts::boot_scripts,
    ),
    step(
        "config-management",
        Stage::Final,
        Frequency::Instance,
        cm::hand_off,
    ),
    step("ready", Stage::Final, Frequency::Boot, report::ready),
];

/// Runs a stage's steps; a failing step is logged and recorded, the others
/// go on. Returns the records in order.
pub fn run_stage(stage: Stage, env: &Env<'_>) -> Vec<(String, StepRecord)> {
    let mut records = Vec::new();
    // Per-instance steps that applied: recorded as done only once what they
    // wrote is on disk, so a crash makes them run again rather than be skipped.
    let mut applied = Vec::new();
    for step in STEPS.iter().filter(|s| s.stage == stage) {
        let started = Instant::now();
        let instance = &env.context.instance_id;
        let result = if step.frequency == Frequency::Instance && env.state.done(instance, step.name)
        {
            Ok(Done::Skipped(format!(
                "already done for instance {instance}"
            )))
        } else {
            (step.run)(env)
        };
        if step.frequency == Frequency::Instance && matches!(result, Ok(Done::Applied(_))) {
            applied.push(step.name);
        }
        let millis = started.elapsed().as_millis() as u64;
        let (outcome, detail) = match result {
            Ok(Done::Applied(detail)) => ("applied", detail),
            Ok(Done::Skipped(detail)) => ("skipped", detail),
            Err(error) => ("failed", error),
        };
        log::info(&format!(
            "{}: {outcome} ({millis} ms){}",
            step.name,
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        ));
        records.push((
            step.name.to_string(),
            StepRecord {
                stage: stage.name().to_string(),
                outcome: outcome.to_string(),
                detail,
                millis,
                at: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            },
        ));
    }
    crate::files::sync_filesystems();
    for step in applied {
        if let Err(e) = env.state.mark(&env.context.instance_id, step) {
            log::warn(&format!("{step}: cannot record that it ran: {e}"));
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::context::{Kind, interpret};

    fn seed(kind: Kind, files: &[(&str, &str)]) -> Found {
        Found {
            kind,
            origin: "test".into(),
            files: files
                .iter()
                .map(|(name, text)| (name.to_string(), text.as_bytes().to_vec()))
                .collect(),
            service: None,
            overrides: BTreeMap::new(),
        }
    }

    fn nocloud(user_data: &str) -> (Found, Context) {
        let found = seed(
            Kind::NoCloud,
            &[
                ("meta-data", "instance-id: i-1\n"),
                ("user-data", user_data),
            ],
        );
        let context = interpret(&found).unwrap();
        (found, context)
    }

    /// The local stage keeps systemd from starting the final stage when
    /// `needs_final_stage` says no: every final step must then have nothing
    /// to do, and anything a final step acts on must say yes.
    #[test]
    fn the_final_stage_is_needed_exactly_when_a_final_step_has_work() {
        let local_only = "#cloud-config\nhostname: h\nusers: [{name: alice, sudo: ALL}]\nwrite_files: [{path: /etc/x, content: x}]\n";
        let (found, context) = nocloud(local_only);
        assert!(!context.needs_final_stage());
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let env = Env {
            root: &root,
            context: &context,
            found: &found,
            state: &State::new(&root),
            network: &Network::new(&root),
        };
        let records = run_stage(Stage::Final, &env);
        assert_eq!(
            records.len(),
            STEPS.iter().filter(|s| s.stage == Stage::Final).count()
        );
        for (name, record) in records {
            assert_eq!(record.outcome, "skipped", "{name}: {}", record.detail);
        }

        for final_work in [
            "write_files: [{path: /etc/x, content: x, defer: true}]",
            "runcmd: [[touch, /tmp/x]]",
            "phone_home: {url: 'http://10.0.0.1/ready'}",
            "puppet: {conf: {agent: {server: p}}}",
            "chef: {run_list: ['recipe[a]']}",
        ] {
            let (_, context) = nocloud(&format!("#cloud-config\n{final_work}\n"));
            assert!(context.needs_final_stage(), "{final_work}");
        }
        let (_, context) = nocloud("#!/bin/sh\ntouch /tmp/x\n");
        assert!(context.needs_final_stage(), "a shell user-data");
        let opennebula = |variables: &str| {
            interpret(&seed(Kind::OpenNebula, &[("context.sh", variables)])).unwrap()
        };
        assert!(!opennebula("VMID='1'\nSET_HOSTNAME='h'\n").needs_final_stage());
        assert!(opennebula("VMID='1'\nSTART_SCRIPT='touch /tmp/x'\n").needs_final_stage());
        assert!(
            opennebula("VMID='1'\nREPORT_READY='YES'\nONEGATE_ENDPOINT='http://10.0.0.1:5030'\n")
                .needs_final_stage()
        );
    }
}
