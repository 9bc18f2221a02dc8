//! Output formats: the raw disk converted by kiln-disk (raw, qcow2, VMDK
//! streamOptimized, VHD), OVA, and whole-file compression.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use kiln_disk::{CreateOptions, OpenOptions};
use kiln_template::{Compression, Format, Output};

use crate::Error;

/// One file written for an output.
#[derive(Debug, Clone)]
pub struct OutputFile {
    pub path: PathBuf,
    pub format: Format,
    pub compression: Compression,
}

pub fn format_name(f: Format) -> &'static str {
    match f {
        Format::Raw => "raw",
        Format::Qcow2 => "qcow2",
        Format::Vmdk => "vmdk",
        Format::Vhd => "vhd",
        Format::Ova => "ova",
    }
}

/// Converts the raw disk at `raw` into `format` at `dest` through kiln-disk.
pub fn convert(
    raw: &Path,
    dest: &Path,
    format: kiln_disk::Format,
    compression: Compression,
) -> Result<(), Error> {
    let src = kiln_disk::open(
        raw,
        &OpenOptions {
            format: Some(kiln_disk::Format::Raw),
            allow_external: false,
        },
    )?;
    let mut opts = CreateOptions::new(format);
    match (format, compression) {
        (kiln_disk::Format::Qcow2, Compression::Zlib) => opts.compress = true,
        (kiln_disk::Format::Qcow2, Compression::Zstd) => {
            opts.compress = true;
            opts.compression_type = kiln_disk::Compression::Zstd;
        }
        (kiln_disk::Format::Vmdk, _) => opts.vmdk_adapter = "lsilogic".into(),
        _ => {}
    }
    let dst = kiln_disk::create(dest, &opts, src.virtual_size())?;
    kiln_disk::convert::convert(src.as_ref(), dst, &mut |_| {})?;
    Ok(())
}

/// Writes `output` of the raw disk into `dir`, named after `stem`.
pub fn write(
    raw: &Path,
    dir: &Path,
    stem: &str,
    output: &Output,
    ova: &crate::ova::OvaSpec<'_>,
) -> Result<OutputFile, Error> {
    let (disk_format, ext) = match output.format {
        Format::Raw => (kiln_disk::Format::Raw, "raw"),
        Format::Qcow2 => (kiln_disk::Format::Qcow2, "qcow2"),
        Format::Vmdk => (kiln_disk::Format::Vmdk, "vmdk"),
        Format::Vhd => (kiln_disk::Format::Vhd, "vhd"),
        Format::Ova => {
            let path = dir.join(format!("{stem}.ova"));
            crate::ova::write(raw, &path, stem, ova)?;
            return Ok(OutputFile {
                path,
                format: Format::Ova,
                compression: Compression::None,
            });
        }
    };
    let plain = dir.join(format!("{stem}.{ext}"));
    // qcow2 compresses inside the image; the others as whole files.
    let inner = if output.format == Format::Qcow2 {
        output.compression
    } else {
        Compression::None
    };
    convert(raw, &plain, disk_format, inner)?;
    let path = match (output.format, output.compression) {
        (Format::Qcow2, _) | (_, Compression::None) => plain,
        (_, c) => {
            let packed = compress_file(&plain, c)?;
            std::fs::remove_file(&plain)?;
            packed
        }
    };
    Ok(OutputFile {
        path,
        format: output.format,
        compression: output.compression,
    })
}

/// Compresses `path` into `path.gz|.xz|.zst` and returns the new path.
fn compress_file(path: &Path, compression: Compression) -> Result<PathBuf, Error> {
    let ext = match compression {
        Compression::Gzip => "gz",
        Compression::Xz => "xz",
        Compression::Zstd => "zst",
        Compression::None | Compression::Zlib => {
            return Err(Error::new(format!(
                "{} is not a whole-file compression",
                compression.name()
            )));
        }
    };
    let dest = PathBuf::from(format!("{}.{ext}", path.display()));
    let mut input = File::open(path)?;
    let out = BufWriter::new(File::create(&dest)?);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    match compression {
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            std::io::copy(&mut input, &mut enc)?;
            enc.finish()?.flush()?;
        }
        Compression::Xz => {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads)
                .preset(6)
                .encoder()
                .map_err(|e| Error::new(format!("xz: {e}")))?;
            let mut enc = liblzma::write::XzEncoder::new_stream(out, stream);
            std::io::copy(&mut input, &mut enc)?;
            enc.finish()?.flush()?;
        }
        _ => {
            let mut enc = zstd::Encoder::new(out, 3)?;
            enc.multithread(threads)?;
            std::io::copy(&mut input, &mut enc)?;
            enc.finish()?.flush()?;
        }
    }
    Ok(dest)
}
