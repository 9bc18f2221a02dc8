//! Conversion and comparison of guest contents between any two images.

use crate::{Allocation, DiskRead, DiskWrite, Result};

/// How much guest data one step of convert or compare handles.
const WINDOW: u64 = 4 << 20;

/// Whether `buf` is all zero bytes. ORing 64-byte chunks lets the compiler
/// vectorise the scan, which runs on every byte convert reads.
pub fn is_zero(buf: &[u8]) -> bool {
    let chunks = buf.chunks_exact(64);
    let tail = chunks.remainder();
    tail.iter().all(|&b| b == 0)
        && chunks
            .into_iter()
            .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Fills `buf` with the guest bytes at `offset`, reading only the parts the
/// image has data for. Returns false when the whole range reads as zeros.
fn read_window(src: &dyn DiskRead, buf: &mut [u8], offset: u64) -> Result<bool> {
    let len = buf.len() as u64;
    let mut pos = 0;
    let mut any_data = false;
    while pos < len {
        let (alloc, n) = src.block_status(offset + pos, len - pos)?;
        let piece = &mut buf[pos as usize..(pos + n) as usize];
        match alloc {
            Allocation::Zero => piece.fill(0),
            Allocation::Data => {
                src.read_at(piece, offset + pos)?;
                any_data = true;
            }
        }
        pos += n;
    }
    Ok(any_data)
}

/// Copies the guest contents of `src` into `dst`, in ascending order, handing
/// `dst` only the units that hold non-zero data. `progress` is called with the
/// number of guest bytes done so far.
pub fn convert(
    src: &dyn DiskRead,
    mut dst: Box<dyn DiskWrite>,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let size = src.virtual_size();
    let unit = dst.granularity();
    let window = WINDOW.div_ceil(unit) * unit;
    let mut buf = vec![0u8; window as usize];
    let mut offset = 0;
    while offset < size {
        let len = window.min(size - offset);
        let buf = &mut buf[..len as usize];
        if read_window(src, buf, offset)? {
            write_data_runs(dst.as_mut(), buf, offset, unit as usize)?;
        }
        offset += len;
        progress(offset);
    }
    dst.finish()
}

/// Hands `dst` each run of consecutive units of `buf` that are not all zeros,
/// as one write: fewer calls, and long runs reach the file without a copy.
fn write_data_runs(dst: &mut dyn DiskWrite, buf: &[u8], offset: u64, unit: usize) -> Result<()> {
    let mut run_start = None;
    for (i, piece) in buf.chunks(unit).enumerate() {
        match (is_zero(piece), run_start) {
            (false, None) => run_start = Some(i),
            (true, Some(start)) => {
                dst.write_at(offset + (start * unit) as u64, &buf[start * unit..i * unit])?;
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run_start {
        dst.write_at(offset + (start * unit) as u64, &buf[start * unit..])?;
    }
    Ok(())
}

/// The result of comparing two images' guest contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Identical,
    /// The first guest offset at which they differ.
    DiffersAt(u64),
}

/// Compares guest contents as qemu-img compare does without `-s`: when the
/// sizes differ, the extra part of the larger image must read as zeros.
pub fn compare(
    a: &dyn DiskRead,
    b: &dyn DiskRead,
    progress: &mut dyn FnMut(u64),
) -> Result<Comparison> {
    let size = a.virtual_size().max(b.virtual_size());
    let mut buf_a = vec![0u8; WINDOW as usize];
    let mut buf_b = vec![0u8; WINDOW as usize];
    let mut offset = 0;
    while offset < size {
        let len = WINDOW.min(size - offset);
        let (wa, wb) = (&mut buf_a[..len as usize], &mut buf_b[..len as usize]);
        read_clipped(a, wa, offset)?;
        read_clipped(b, wb, offset)?;
        if wa != wb {
            let at = wa
                .iter()
                .zip(wb.iter())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            return Ok(Comparison::DiffersAt(offset + at as u64));
        }
        offset += len;
        progress(offset);
    }
    Ok(Comparison::Identical)
}

/// Reads a window that may run past the end of `src`; the part past it is zeros.
fn read_clipped(src: &dyn DiskRead, buf: &mut [u8], offset: u64) -> Result<()> {
    let size = src.virtual_size();
    let inside = size.saturating_sub(offset).min(buf.len() as u64) as usize;
    buf[inside..].fill(0);
    if inside > 0 {
        read_window(src, &mut buf[..inside], offset)?;
    }
    Ok(())
}
