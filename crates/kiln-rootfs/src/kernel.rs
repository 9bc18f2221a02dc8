//! The kernel and initramfs the image boots.

use std::cmp::Ordering;

use crate::{Error, Result, Sandbox};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `6.1.0-28-amd64`
    pub version: String,
    /// Paths inside the image: `/boot/vmlinuz-…`, `/boot/initrd.img-…`.
    pub image: String,
    pub initrd: String,
}

/// Compares kernel versions by their numeric and text parts in turn.
fn version_order(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(['.', '-', '+', '~'])
            .map(|p| (p.parse().unwrap_or(0), p.to_string()))
            .collect()
    };
    parts(a).cmp(&parts(b))
}

/// The newest kernel in /boot; its initramfs is made when it is missing.
pub fn prepare(sandbox: &Sandbox) -> Result<Kernel> {
    let boot = sandbox.root().join("boot");
    let mut versions: Vec<String> = std::fs::read_dir(&boot)
        .map_err(crate::io_error(format!("reading {}", boot.display())))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .collect();
    versions.sort_by(|a, b| version_order(a, b));
    let version = versions.pop().ok_or_else(|| {
        Error::Invalid(
            "no kernel in the image's /boot: add a kernel package such as linux-image-amd64".into(),
        )
    })?;
    let kernel = Kernel {
        image: format!("/boot/vmlinuz-{version}"),
        initrd: format!("/boot/initrd.img-{version}"),
        version,
    };
    if !sandbox
        .root()
        .join(kernel.initrd.trim_start_matches('/'))
        .exists()
    {
        if !sandbox.root().join("usr/sbin/update-initramfs").exists() {
            return Err(Error::Invalid(format!(
                "kernel {} has no initramfs and initramfs-tools is not installed",
                kernel.version
            )));
        }
        sandbox.run(&["update-initramfs", "-c", "-k", &kernel.version])?;
    }
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::version_order;
    use std::cmp::Ordering;

    #[test]
    fn newer_kernels_sort_last() {
        assert_eq!(
            version_order("6.1.0-9-amd64", "6.1.0-28-amd64"),
            Ordering::Less
        );
        assert_eq!(
            version_order("6.12.1-amd64", "6.1.0-28-amd64"),
            Ordering::Greater
        );
    }
}
