//! Clean-up before the tree becomes an image: what must differ between clones
//! (machine-id, SSH host keys) is removed, and what only the build needed
//! (package caches and lists, logs, temporary files, the build's resolv.conf
//! and policy-rc.d) goes too.

use std::path::Path;

use crate::files::{TreeFile, install};
use crate::{Result, Sandbox};

/// Generates the SSH host keys a clone boots without, before sshd starts.
const SSH_KEYGEN_UNIT: &str = "/etc/systemd/system/kiln-ssh-host-keys.service";
const SSH_KEYGEN_UNIT_TEXT: &str = "[Unit]
Description=Generate SSH host keys (removed from the image by kiln)
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
RequiredBy=ssh.service
";

/// Fixed text, run inside the root: no value from a template reaches it.
const CLEAN_SCRIPT: &str = r#"set -eu
if [ -f /usr/sbin/policy-rc.d ] && grep -q '^# kiln:' /usr/sbin/policy-rc.d; then
  rm -f /usr/sbin/policy-rc.d
fi
if [ -e /etc/machine-id ]; then : >/etc/machine-id; fi
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
  rm -f /var/lib/dbus/machine-id
fi
rm -f /etc/ssh/ssh_host_*
if command -v apt-get >/dev/null; then apt-get clean; fi
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
rm -f /var/cache/debconf/*-old /var/lib/dpkg/*-old
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find /var/log -type f -exec truncate --size=0 {} +
rm -rf /var/log/journal/* /tmp/* /tmp/.[!.]* /var/tmp/* /root/.bash_history
"#;

pub fn clean(sandbox: &Sandbox) -> Result<()> {
    if sandbox.root().join("usr/sbin/sshd").exists() {
        install(
            sandbox,
            &[TreeFile::new(SSH_KEYGEN_UNIT, SSH_KEYGEN_UNIT_TEXT, 0o644)],
        )?;
        sandbox.run(&["systemctl", "enable", "kiln-ssh-host-keys.service"])?;
    }
    sandbox.shell(CLEAN_SCRIPT)?;
    remove_build_resolv_conf(sandbox.root())
}

/// The bootstrap copies the host's resolv.conf into the tree; the image gets
/// its own from DHCP. Removed from outside, since the sandbox mounts the
/// host's over it; only a regular file in a real /etc is touched.
fn remove_build_resolv_conf(root: &Path) -> Result<()> {
    let etc = root.join("etc");
    let is_real_dir = std::fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir());
    let file = etc.join("resolv.conf");
    let is_file = std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file());
    if is_real_dir && is_file {
        std::fs::remove_file(&file).map_err(crate::io_error(file.display().to_string()))?;
    }
    Ok(())
}
