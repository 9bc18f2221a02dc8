//! Compressed clusters: raw deflate with a 4 KiB window (what qemu's
//! decompressor is set up for) or one zstd frame per cluster.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::header::CompressionType;
use crate::{Error, Result};

/// zlib level qemu uses (Z_DEFAULT_COMPRESSION) and zstd's default level, so
/// that kiln's output is comparable with qemu-img's in size.
const ZLIB_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;
/// qemu inflates with a 2^12-byte window, so deflate must not reach further back.
const DEFLATE_WINDOW_BITS: u8 = 12;

thread_local! {
    static DEFLATE: RefCell<Compress> =
        RefCell::new(Compress::new_with_window_bits(Compression::new(ZLIB_LEVEL), false, DEFLATE_WINDOW_BITS));
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses one cluster; None when compression would not make it smaller,
/// in which case the cluster is stored as it is.
pub fn compress_cluster(kind: CompressionType, data: &[u8]) -> Option<Vec<u8>> {
    // Anything not shorter than the cluster minus a sector gains nothing on disk.
    let limit = data.len().saturating_sub(512).max(1);
    let out = match kind {
        CompressionType::Zlib => DEFLATE.with_borrow_mut(|c| {
            c.reset();
            let mut out = Vec::with_capacity(limit);
            match c.compress_vec(data, &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => Some(out),
                _ => None,
            }
        }),
        CompressionType::Zstd => ZSTD.with_borrow_mut(|slot| {
            let c = slot.get_or_insert_with(|| {
                zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd context")
            });
            let mut out = vec![0u8; limit];
            let n = c.compress_to_buffer(data, &mut out).ok()?;
            out.truncate(n);
            Some(out)
        }),
    }?;
    (out.len() < limit).then_some(out)
}

/// Decompresses one cluster from `raw`, which may carry padding after the
/// compressed stream (descriptors count whole sectors).
pub fn decompress_cluster(
    kind: CompressionType,
    raw: &[u8],
    cluster_size: usize,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; cluster_size];
    let filled = match kind {
        CompressionType::Zlib => {
            let mut d = Decompress::new_with_window_bits(false, 15);
            match d.decompress(raw, &mut out, FlushDecompress::Finish) {
                Ok(_) => d.total_out() as usize,
                Err(e) => return Err(Error::invalid("qcow2", format!("compressed cluster: {e}"))),
            }
        }
        CompressionType::Zstd => {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let mut d = Decoder::new().map_err(Error::Io)?;
            let mut input = InBuffer::around(raw);
            let mut output = OutBuffer::around(&mut out[..]);
            // One frame; stop once the cluster is full or the frame ends.
            loop {
                let hint = d
                    .run(&mut input, &mut output)
                    .map_err(|e| Error::invalid("qcow2", format!("compressed cluster: {e}")))?;
                if hint == 0 || output.pos() == cluster_size || input.pos() == raw.len() {
                    break;
                }
            }
            output.pos()
        }
    };
    if filled != cluster_size {
        return Err(Error::invalid(
            "qcow2",
            format!("compressed cluster holds {filled} bytes, not {cluster_size}"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_round_trip_in_both_algorithms() {
        let data: Vec<u8> = (0..65536u32).map(|i| (i / 100 % 7) as u8).collect();
        for kind in [CompressionType::Zlib, CompressionType::Zstd] {
            let mut packed = compress_cluster(kind, &data).expect("compressible");
            packed.extend_from_slice(&[0u8; 300]); // sector padding
            assert_eq!(decompress_cluster(kind, &packed, data.len()).unwrap(), data);
        }
    }

    #[test]
    fn incompressible_clusters_are_stored_as_they_are() {
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(compress_cluster(CompressionType::Zlib, &noise).is_none());
        assert!(compress_cluster(CompressionType::Zstd, &noise).is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for kind in [CompressionType::Zlib, CompressionType::Zstd] {
            assert!(decompress_cluster(kind, &[0xff; 100], 65536).is_err());
        }
    }
}
