//! The GUID partition table and its protective MBR, written by kiln (gptman).

use std::fs::File;

use gptman::{GPT, GPTPartitionEntry};

use crate::layout::{Layout, SECTOR};
use crate::uuid;
use crate::{Error, Result};

fn guid(text: &str) -> Result<[u8; 16]> {
    uuid::parse(text)
        .map(|id| uuid::to_gpt_bytes(&id))
        .ok_or_else(|| Error::Invalid(format!("{text:?} is not a GUID")))
}

fn gpt_error(e: gptman::Error) -> Error {
    Error::Invalid(format!("partition table: {e}"))
}

/// Writes the primary and backup GPT and a protective MBR; the MBR's boot
/// code area (bytes 0..440) is left as it is.
pub fn write(image: &mut File, layout: &Layout) -> Result<()> {
    let mut gpt = GPT::new_from(image, SECTOR, guid(&layout.disk_guid)?).map_err(gpt_error)?;
    for p in &layout.partitions {
        gpt[p.number] = GPTPartitionEntry {
            partition_type_guid: guid(&p.type_guid)?,
            unique_partition_guid: guid(&p.part_uuid)?,
            starting_lba: p.first_lba(),
            ending_lba: p.last_lba(),
            attribute_bits: 0,
            partition_name: p.label.as_str().into(),
        };
    }
    gpt.write_into(image).map_err(gpt_error)?;
    GPT::write_protective_mbr_into(image, SECTOR).map_err(gpt_error)?;
    image
        .sync_data()
        .map_err(crate::io_error("syncing the disk"))?;
    Ok(())
}
