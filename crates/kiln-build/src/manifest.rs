//! The JSON manifest written beside the outputs.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub kiln_version: &'static str,
    pub template: TemplateInfo,
    pub build: BuildInfo,
    pub os: OsInfo,
    pub kernel: Option<String>,
    pub disk: DiskInfo,
    pub packages: Vec<PackageInfo>,
    pub outputs: Vec<OutputInfo>,
    pub stages: Vec<StageInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemplateInfo {
    pub name: String,
    pub version: Option<String>,
    pub file: String,
    /// SHA-256 of the resolved template and every local file, script and key it names.
    pub digest: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    /// SOURCE_DATE_EPOCH when set, else the start of the build (seconds since 1970).
    pub timestamp: u64,
    pub source_date_epoch: bool,
    pub duration_seconds: f64,
    pub bootstrap: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OsInfo {
    pub distribution: String,
    pub release: String,
    pub arch: String,
    pub mirror: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskInfo {
    pub size: u64,
    pub boot: String,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub number: u32,
    pub role: &'static str,
    pub offset: u64,
    pub size: u64,
    pub partuuid: String,
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputInfo {
    pub file: String,
    pub format: &'static str,
    pub compression: &'static str,
    pub size: u64,
    pub sha256: String,
    pub sha512: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageInfo {
    pub name: &'static str,
    pub seconds: f64,
    pub cached: bool,
}
