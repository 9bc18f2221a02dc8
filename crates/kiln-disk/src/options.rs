//! Output options, in qemu-img's `-o key=value,...` vocabulary.

use crate::{Error, Format, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Raw deflate for qcow2, zlib streams for VMDK.
    #[default]
    Zlib,
    Zstd,
}

/// How to write a new image. Defaults follow qemu-img's: qcow2 v3 with 64 KiB
/// clusters, VHD dynamic, VMDK streamOptimized (the only VMDK kiln writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub format: Format,
    /// qcow2: "0.10" (v2) or "1.1" (v3).
    pub qcow2_v2: bool,
    pub cluster_size: u64,
    /// `-c`: compress data clusters (qcow2; VMDK streamOptimized always is).
    pub compress: bool,
    /// qcow2's `compression_type`: zstd needs v3.
    pub compression_type: Compression,
    /// VHD: fixed instead of dynamic.
    pub vhd_fixed: bool,
    /// VHD: keep the exact size given instead of rounding to CHS geometry
    /// (qemu-img's `force_size`; what Azure needs).
    pub vhd_force_size: bool,
    /// VMDK: the adapter type written into the descriptor.
    pub vmdk_adapter: String,
    /// Worker threads for compression; 0 = one per core.
    pub threads: usize,
}

impl CreateOptions {
    pub fn new(format: Format) -> Self {
        CreateOptions {
            format,
            qcow2_v2: false,
            cluster_size: 65536,
            compress: false,
            compression_type: Compression::Zlib,
            vhd_fixed: false,
            vhd_force_size: false,
            vmdk_adapter: "ide".into(),
            threads: 0,
        }
    }

    /// Applies a qemu-img style option list: `compat=0.10,cluster_size=2M`.
    pub fn apply(&mut self, list: &str) -> Result<()> {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("option {item:?} must be key=value")))?;
            self.set(key.trim(), value.trim())?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = || {
            Error::Usage(format!(
                "invalid value {value:?} for option {key} of {}",
                self.format
            ))
        };
        match (self.format, key) {
            (Format::Qcow2, "compat") => {
                self.qcow2_v2 = match value {
                    "0.10" | "v2" => true,
                    "1.1" | "v3" => false,
                    _ => return Err(bad()),
                }
            }
            (Format::Qcow2, "cluster_size") => {
                let size = parse_size(value).ok_or_else(bad)?;
                if !size.is_power_of_two() || !(512..=2 << 20).contains(&size) {
                    return Err(Error::Usage(format!(
                        "cluster_size must be a power of two between 512 and 2M, not {value}"
                    )));
                }
                self.cluster_size = size;
            }
            (Format::Qcow2, "compression_type") => {
                self.compression_type = match value {
                    "zlib" => Compression::Zlib,
                    "zstd" => Compression::Zstd,
                    _ => return Err(bad()),
                };
            }
            (Format::Vhd, "subformat") => {
                self.vhd_fixed = match value {
                    "fixed" => true,
                    "dynamic" => false,
                    _ => return Err(bad()),
                }
            }
            (Format::Vhd, "force_size") => {
                self.vhd_force_size = parse_bool(value).ok_or_else(bad)?
            }
            (Format::Vmdk, "subformat") => {
                if value != "streamOptimized" {
                    return Err(Error::Usage(format!(
                        "kiln writes VMDK as streamOptimized only (asked for {value})"
                    )));
                }
            }
            (Format::Vmdk, "adapter_type") => match value {
                "ide" | "lsilogic" | "buslogic" | "legacyESX" => self.vmdk_adapter = value.into(),
                _ => return Err(bad()),
            },
            (_, "threads") => self.threads = value.parse().map_err(|_| bad())?,
            _ => {
                return Err(Error::Usage(format!(
                    "option {key:?} is not known for format {}",
                    self.format
                )));
            }
        }
        Ok(())
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Parses a size the way qemu-img does: a number with an optional binary
/// suffix (k, M, G, T, P, E; case-insensitive), bytes when bare.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        "e" | "eb" | "eib" => 60,
        _ => return None,
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(1u64 << shift);
    }
    let f: f64 = num.parse().ok()?;
    let bytes = f * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_qemu_img() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("10X"), None);
        assert_eq!(parse_size("99999999999999999999E"), None);
    }

    #[test]
    fn options_are_checked_per_format() {
        let mut o = CreateOptions::new(Format::Qcow2);
        o.apply("compat=0.10,cluster_size=2M").unwrap();
        assert!(o.qcow2_v2);
        assert_eq!(o.cluster_size, 2 << 20);
        assert!(o.apply("cluster_size=3000").is_err());
        assert!(o.apply("subformat=fixed").is_err());
        let mut v = CreateOptions::new(Format::Vhd);
        v.apply("subformat=fixed,force_size=on").unwrap();
        assert!(v.vhd_fixed && v.vhd_force_size);
    }
}
