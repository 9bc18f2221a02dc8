//! Waiting for the network only when something needs it.
//!
//! The final stage is ordered after `network.target` (the network is being
//! configured), not `network-online.target`: a context read from a local
//! device that only sets names, users, keys and files must not hold the boot
//! back until DHCP answers. Whatever does reach out — the metadata service,
//! the ready report, scripts, configuration management — first asks systemd
//! for `network-online.target`, once per run, which waits as cloud-init's
//! final stage would (systemd-networkd-wait-online, ifupdown-wait-online or
//! NetworkManager-wait-online, whichever the image has).

use std::cell::OnceCell;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::log;
use crate::root::Root;

pub struct Network {
    /// Only a live system booted by systemd is waited for.
    systemd: bool,
    waited: OnceCell<()>,
}

impl Network {
    pub fn new(root: &Root) -> Network {
        Network {
            systemd: root.is_live() && Path::new("/run/systemd/system").is_dir(),
            waited: OnceCell::new(),
        }
    }

    /// Blocks until systemd reaches `network-online.target` (at most once a
    /// run). A failure is logged and the caller goes on: its own request or
    /// command then says what is missing.
    pub fn wait_online(&self) {
        if !self.systemd {
            return;
        }
        self.waited.get_or_init(|| {
            let started = Instant::now();
            let result = Command::new("systemctl")
                .args(["start", "network-online.target"])
                .status();
            let millis = started.elapsed().as_millis();
            match result {
                Ok(status) if status.success() => {
                    log::info(&format!("network online ({millis} ms)"))
                }
                Ok(status) => log::warn(&format!(
                    "network-online.target not reached ({status}, {millis} ms)"
                )),
                Err(e) => log::warn(&format!("cannot run systemctl: {e}")),
            }
        });
    }
}
