//! Growing a qcow2 image in place.
//!
//! When the L1 table has room, only the size changes. Otherwise a larger L1
//! table and freshly computed refcount structures are appended, and one
//! write of the header's fixed fields switches to them: a crash before that
//! write leaves the old image intact (the appended clusters are unreferenced
//! and unrefcounted).

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::check::walk;
use super::header::{INCOMPAT_DIRTY, MAX_L1_BYTES};
use super::reader::{read_header, read_table};
use crate::{Error, Result};

pub fn grow(file: &File, new_size: u64) -> Result<()> {
    let file_size = file.metadata()?.len();
    let mut header = read_header(file, file_size)?;
    if new_size < header.size {
        return Err(Error::unsupported(
            "qcow2",
            "shrinking: convert to a smaller raw image instead",
        ));
    }
    if header.nb_snapshots > 0 {
        return Err(Error::unsupported(
            "qcow2",
            "resizing an image that has snapshots",
        ));
    }
    if header.incompatible_features & INCOMPAT_DIRTY != 0 {
        return Err(Error::invalid(
            "qcow2",
            "the image is dirty: its refcounts must be repaired first",
        ));
    }
    let cs = header.cluster_size();
    let old_entries = header.l1_size as u64;
    header.size = new_size;
    let entries = header.required_l1_entries().max(old_entries);
    if entries * 8 > MAX_L1_BYTES {
        return Err(Error::Usage(format!(
            "{new_size} bytes is too large for {cs}-byte clusters"
        )));
    }
    let mut l1 = read_table(
        file,
        file_size,
        header.l1_table_offset,
        old_entries,
        "L1 table",
    )?;
    let capacity = (old_entries * 8).div_ceil(cs).max(1) * cs / 8;
    let spare_is_zero = || -> Result<bool> {
        let spare = read_table(
            file,
            file_size,
            header.l1_table_offset + old_entries * 8,
            entries - old_entries,
            "L1 table",
        )?;
        Ok(spare.iter().all(|&e| e == 0))
    };
    if entries <= capacity && spare_is_zero()? {
        header.l1_size = entries as u32;
    } else {
        l1.resize(entries as usize, 0);
        let bytes: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        let at = file_size.next_multiple_of(cs);
        let mut area = vec![0u8; (bytes.len() as u64).div_ceil(cs) as usize * cs as usize];
        area[..bytes.len()].copy_from_slice(&bytes);
        file.write_all_at(&area, at)?;
        header.l1_table_offset = at;
        header.l1_size = entries as u32;
        rebuild_refcounts(file, &mut header)?;
    }
    // Bytes 24..60 of the header: size, crypt method, L1 size and offset,
    // refcount table offset and clusters, written in one go.
    let mut fixed = Vec::with_capacity(36);
    fixed.extend_from_slice(&header.size.to_be_bytes());
    fixed.extend_from_slice(&header.crypt_method.to_be_bytes());
    fixed.extend_from_slice(&header.l1_size.to_be_bytes());
    fixed.extend_from_slice(&header.l1_table_offset.to_be_bytes());
    fixed.extend_from_slice(&header.refcount_table_offset.to_be_bytes());
    fixed.extend_from_slice(&header.refcount_table_clusters.to_be_bytes());
    file.sync_all()?;
    file.write_all_at(&fixed, 24)?;
    file.sync_all()?;
    Ok(())
}

/// Appends refcount blocks and a table that count every cluster `header`
/// references, themselves included, and points `header` at them.
fn rebuild_refcounts(file: &File, header: &mut super::Header) -> Result<()> {
    let cs = header.cluster_size();
    let file_size = file.metadata()?.len().next_multiple_of(cs);
    let mut refs: Vec<u64> = {
        // The old refcount structures stay in the file but count for nothing.
        let mut probe = header.clone();
        probe.refcount_table_clusters = 0;
        let w = walk(file, file_size, &probe)?;
        if let Some(p) = w.problems.first() {
            return Err(Error::invalid(
                "qcow2",
                format!("cannot resize a damaged image: {p}"),
            ));
        }
        w.refs.iter().map(|&r| r as u64).collect()
    };
    let bits = header.refcount_bits() as u64;
    let per_block = cs * 8 / bits;
    let used = file_size / cs;
    let (mut blocks, mut table_clusters) = (0u64, 0u64);
    loop {
        let total = used + blocks + table_clusters;
        let next = (
            total.div_ceil(per_block),
            (total.div_ceil(per_block) * 8).div_ceil(cs),
        );
        if next == (blocks, table_clusters) {
            break;
        }
        (blocks, table_clusters) = next;
    }
    refs.resize((used + blocks + table_clusters) as usize, 0);
    refs[used as usize..].fill(1);
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    let mut area = vec![0u8; ((blocks + table_clusters) * cs) as usize];
    for (cluster, &r) in refs.iter().enumerate() {
        if r > max {
            return Err(Error::unsupported(
                "qcow2",
                format!("refcount {r} does not fit in {bits} bits"),
            ));
        }
        let (block, index) = (cluster as u64 / per_block, cluster as u64 % per_block);
        set_refcount(
            &mut area[(block * cs) as usize..((block + 1) * cs) as usize],
            bits as u32,
            index,
            r,
        );
    }
    let table_start = file_size + blocks * cs;
    for b in 0..blocks {
        let at = (blocks * cs + b * 8) as usize;
        area[at..at + 8].copy_from_slice(&(file_size + b * cs).to_be_bytes());
    }
    file.write_all_at(&area, file_size)?;
    header.refcount_table_offset = table_start;
    header.refcount_table_clusters = table_clusters as u32;
    Ok(())
}

/// Stores refcount `index` in a block of `bits`-bit entries (packed from the
/// low bits of each byte below 8 bits, big-endian above).
fn set_refcount(block: &mut [u8], bits: u32, index: u64, value: u64) {
    if bits >= 8 {
        let width = bits as usize / 8;
        let bytes = value.to_be_bytes();
        block[index as usize * width..][..width].copy_from_slice(&bytes[8 - width..]);
    } else {
        let per_byte = 8 / bits as u64;
        let shift = (index % per_byte) as u32 * bits;
        let byte = &mut block[(index / per_byte) as usize];
        let mask = ((1u16 << bits) - 1) as u8;
        *byte = (*byte & !(mask << shift)) | (((value as u8) & mask) << shift);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tables::get_refcount;
    use super::*;

    #[test]
    fn refcounts_of_every_width_round_trip() {
        for bits in [1u32, 2, 4, 8, 16, 32, 64] {
            let mut block = vec![0u8; 512];
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            };
            let entries = 512 * 8 / bits as u64;
            for i in 0..entries {
                set_refcount(&mut block, bits, i, (i * 7) & max);
            }
            for i in 0..entries {
                assert_eq!(
                    get_refcount(&block, bits, i),
                    (i * 7) & max,
                    "bits {bits} index {i}"
                );
            }
        }
    }
}
