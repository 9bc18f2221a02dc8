//! VFAT seed images (cloud-init accepts `cidata` and `config-2` on vfat as on
//! iso9660; cloud-localds `-f vfat` does the same), written by kiln-fs.

use kiln_fs::fat::{FatFile, FatOptions};

use crate::error::{Error, Result};
use crate::seed::Seed;

const MIB: u64 = 1024 * 1024;
/// Above this size a FAT volume is FAT32; a seed has no need to be.
const FAT16_LIMIT: u64 = 512 * MIB;

pub fn write(seed: &Seed, epoch: i64) -> Result<Vec<u8>> {
    let payload: u64 = seed.files.iter().map(|f| f.contents.len() as u64).sum();
    // Room for the data, cluster slack, the FATs and the directories.
    let size = (2 * payload + 2 * MIB).div_ceil(MIB) * MIB;
    if size >= FAT16_LIMIT {
        return Err(Error::Invalid(format!(
            "seed of {payload} bytes is too large for a VFAT seed image"
        )));
    }
    let files: Vec<FatFile<'_>> = seed
        .files
        .iter()
        .map(|f| FatFile {
            path: &f.path,
            contents: &f.contents,
        })
        .collect();
    let options = FatOptions {
        size,
        label: seed.label.clone(),
        volume_id: volume_id(seed),
        epoch,
    };
    kiln_fs::fat::build(&options, &files).map_err(|e| Error::Invalid(format!("VFAT image: {e}")))
}

/// A volume id derived from the content (FNV-1a), so equal seeds get equal ids.
fn volume_id(seed: &Seed) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let bytes = std::iter::once(seed.label.as_bytes()).chain(
        seed.files
            .iter()
            .flat_map(|f| [f.path.as_bytes(), f.contents.as_slice()]),
    );
    for byte in bytes.flatten() {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    hash
}
