//! `kiln img`: disk image commands in qemu-img's habits (same option letters
//! where qemu-img has them).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kiln_disk::convert::{Comparison, compare, convert};
use kiln_disk::inspect::inspect_file;
use kiln_disk::options::parse_size;
use kiln_disk::{CreateOptions, Format, ImageInfo, OpenOptions};

use crate::output::{EXIT_NEGATIVE, byte_progress};

#[derive(Subcommand)]
pub enum ImgCommand {
    /// Show an image's format, virtual size, disk usage and format details.
    Info {
        /// Read the file as this format instead of detecting it.
        #[arg(short = 'f', long = "format")]
        format: Option<Format>,
        /// Print JSON (the same fields as qemu-img info --output=json, in kiln's names).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        external: External,
        file: PathBuf,
    },
    /// Convert an image to another format, skipping zeros and holes.
    ///
    /// Examples:
    ///   kiln img convert -O qcow2 disk.raw disk.qcow2
    ///   kiln img convert -O qcow2 -c -o compression_type=zstd disk.raw small.qcow2
    ///   kiln img convert -O vhd -o subformat=fixed,force_size=on disk.qcow2 azure.vhd
    ///   kiln img convert -O vmdk disk.qcow2 disk.vmdk     (streamOptimized)
    #[command(verbatim_doc_comment)]
    Convert {
        /// Source format (detected from content when omitted).
        #[arg(short = 'f')]
        source_format: Option<Format>,
        /// Output format: raw, qcow2, vmdk, vhd (or vpc).
        #[arg(short = 'O')]
        output_format: Format,
        /// Compress the output (qcow2; VMDK streamOptimized always is).
        #[arg(short = 'c')]
        compress: bool,
        /// Output options, comma separated: compat=0.10|1.1, cluster_size=SIZE,
        /// compression_type=zlib|zstd (qcow2); subformat=fixed|dynamic,
        /// force_size=on (vhd); adapter_type=ide|lsilogic|buslogic (vmdk); threads=N.
        #[arg(short = 'o')]
        options: Vec<String>,
        /// No progress bar.
        #[arg(short = 'q')]
        quiet: bool,
        #[command(flatten)]
        external: External,
        source: PathBuf,
        destination: PathBuf,
    },
    /// Check an image's metadata for consistency.
    ///
    /// Exit codes as qemu-img's: 0 clean, 1 check not completed, 2 corruptions, 3 leaks only.
    Check {
        #[arg(short = 'f', long = "format")]
        format: Option<Format>,
        #[arg(long)]
        json: bool,
        file: PathBuf,
    },
    /// Compare the guest contents of two images (exit 0 equal, 1 different).
    Compare {
        #[arg(short = 'f')]
        first_format: Option<Format>,
        #[arg(short = 'F')]
        second_format: Option<Format>,
        #[arg(short = 'q')]
        quiet: bool,
        #[command(flatten)]
        external: External,
        first: PathBuf,
        second: PathBuf,
    },
    /// Create a new, empty image.
    Create {
        #[arg(short = 'f', default_value = "raw")]
        format: Format,
        /// Options as for convert.
        #[arg(short = 'o')]
        options: Vec<String>,
        file: PathBuf,
        /// Virtual size, with an optional suffix: 10G, 512M.
        size: String,
    },
    /// Change an image's virtual size (grow; shrinking needs --shrink and raw).
    Resize {
        #[arg(short = 'f')]
        format: Option<Format>,
        #[arg(long)]
        shrink: bool,
        file: PathBuf,
        /// New size, or +SIZE / -SIZE relative to the current one.
        #[arg(allow_hyphen_values = true)]
        size: String,
    },
    /// Decide whether an image from elsewhere is safe to use (exit 0 only when safe).
    ///
    /// Refuses images with backing or external data files, VMDK extents outside
    /// the file, signatures of two formats, tables outside the file or
    /// overlapping, and absurd sizes.
    Inspect {
        /// Run the safety checks (the only inspection so far; kept for clarity in scripts).
        #[arg(long)]
        safety: bool,
        #[arg(long)]
        json: bool,
        file: PathBuf,
    },
}

/// Reading files an image refers to is off unless asked for.
#[derive(Args)]
pub struct External {
    /// Follow backing files, external data files and VMDK extents named inside the image.
    #[arg(long)]
    allow_external: bool,
}

pub fn run(cmd: ImgCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImgCommand::Info {
            format,
            json,
            external,
            file,
        } => info(&file, format, external.allow_external, json),
        ImgCommand::Convert {
            source_format,
            output_format,
            compress,
            options,
            quiet,
            external,
            source,
            destination,
        } => {
            let mut opts = CreateOptions::new(output_format);
            opts.compress = compress;
            for o in &options {
                opts.apply(o)?;
            }
            convert_files(
                &source,
                source_format,
                external.allow_external,
                &destination,
                &opts,
                quiet,
            )
        }
        ImgCommand::Check { format, json, file } => check(&file, format, json),
        ImgCommand::Compare {
            first_format,
            second_format,
            quiet,
            external,
            first,
            second,
        } => {
            let a = open(&first, first_format, external.allow_external)?;
            let b = open(&second, second_format, external.allow_external)?;
            let bar = byte_progress(a.virtual_size().max(b.virtual_size()), quiet);
            let result = compare(a.as_ref(), b.as_ref(), &mut |done| bar.set_position(done))?;
            bar.finish_and_clear();
            if a.virtual_size() != b.virtual_size() {
                eprintln!("Warning: Image size mismatch!");
            }
            Ok(match result {
                Comparison::Identical => {
                    println!("Images are identical.");
                    ExitCode::SUCCESS
                }
                Comparison::DiffersAt(offset) => {
                    println!("Content mismatch at offset {offset}!");
                    ExitCode::from(EXIT_NEGATIVE)
                }
            })
        }
        ImgCommand::Create {
            format,
            options,
            file,
            size,
        } => {
            let mut opts = CreateOptions::new(format);
            for o in &options {
                opts.apply(o)?;
            }
            let size = parse_size(&size).with_context(|| format!("invalid size {size:?}"))?;
            kiln_disk::create(&file, &opts, size)?.finish()?;
            println!("Formatting '{}', fmt={format} size={size}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        ImgCommand::Resize {
            format,
            shrink,
            file,
            size,
        } => {
            let current = open(&file, format, false)?;
            let old = current.virtual_size();
            let new = relative_size(old, &size)?;
            let format = current.info().format;
            drop(current);
            kiln_disk::resize::resize(&file, format, new, shrink)?;
            println!("Image resized.");
            Ok(ExitCode::SUCCESS)
        }
        ImgCommand::Inspect {
            safety: _,
            json,
            file,
        } => {
            let report = inspect_file(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.is_safe() {
                println!(
                    "{}: safe ({} image, virtual size {})",
                    file.display(),
                    report.format,
                    report.virtual_size.unwrap_or(0)
                );
            } else {
                println!("{}: UNSAFE {} image", file.display(), report.format);
                for p in &report.problems {
                    println!("  - {p}");
                }
            }
            Ok(if report.is_safe() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NEGATIVE)
            })
        }
    }
}

fn open(
    path: &Path,
    format: Option<Format>,
    allow_external: bool,
) -> anyhow::Result<Box<dyn kiln_disk::DiskRead>> {
    kiln_disk::open(
        path,
        &OpenOptions {
            format,
            allow_external,
        },
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

fn relative_size(old: u64, spec: &str) -> anyhow::Result<u64> {
    let parse = |s: &str| parse_size(s).with_context(|| format!("invalid size {spec:?}"));
    Ok(if let Some(delta) = spec.strip_prefix('+') {
        old.checked_add(parse(delta)?).context("size overflows")?
    } else if let Some(delta) = spec.strip_prefix('-') {
        old.checked_sub(parse(delta)?)
            .context("cannot shrink below zero")?
    } else {
        parse(spec)?
    })
}

fn info(
    file: &Path,
    format: Option<Format>,
    allow_external: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let image = open(file, format, allow_external)?;
    let info = image.info();
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", render_info(file, &info));
    }
    Ok(ExitCode::SUCCESS)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}

fn render_info(file: &Path, info: &ImageInfo) -> String {
    let mut out = format!(
        "image: {}\nfile format: {}\nvirtual size: {} ({} bytes)\ndisk size: {}\n",
        file.display(),
        info.format,
        human(info.virtual_size),
        info.virtual_size,
        human(info.actual_size)
    );
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k}: {v}\n"));
    if let Some(cs) = info.cluster_size {
        line("cluster_size", &cs.to_string());
    }
    if let Some(s) = &info.subformat {
        line("subformat", s);
    }
    if let Some(c) = &info.compression {
        line("compression type", c);
    }
    if let Some(b) = &info.backing_file {
        line("backing file", b);
    }
    if let Some(b) = &info.backing_format {
        line("backing file format", b);
    }
    for f in &info.external_files {
        line("external file", f);
    }
    for (k, v) in &info.details {
        line(k, v);
    }
    line("dirty", if info.dirty { "true" } else { "false" });
    line("corrupt", if info.corrupt { "true" } else { "false" });
    if !info.snapshots.is_empty() {
        out.push_str("Snapshot list:\nID  TAG  VM_SIZE  DATE  VM_CLOCK\n");
        for s in &info.snapshots {
            out.push_str(&format!(
                "{}  {}  {}  {}  {}\n",
                s.id, s.name, s.vm_state_size, s.date_sec, s.vm_clock_nsec
            ));
        }
    }
    out
}

fn convert_files(
    source: &Path,
    source_format: Option<Format>,
    allow_external: bool,
    destination: &Path,
    opts: &CreateOptions,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let src = open(source, source_format, allow_external)?;
    if source.canonicalize().ok() == destination.canonicalize().ok() {
        bail!("source and destination are the same file");
    }
    // Write beside the destination and rename at the end: a failed or killed
    // convert never leaves a half image under the destination's name.
    let partial = partial_path(destination);
    let result = (|| -> anyhow::Result<()> {
        let dst = kiln_disk::create(&partial, opts, src.virtual_size())?;
        let bar = byte_progress(src.virtual_size(), quiet);
        convert(src.as_ref(), dst, &mut |done| bar.set_position(done))?;
        bar.finish_and_clear();
        std::fs::rename(&partial, destination)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.with_context(|| {
        format!(
            "converting {} to {}",
            source.display(),
            destination.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn partial_path(destination: &Path) -> PathBuf {
    let mut name = destination.file_name().unwrap_or_default().to_os_string();
    name.push(".kiln-partial");
    destination.with_file_name(name)
}

fn check(file: &Path, format: Option<Format>, json: bool) -> anyhow::Result<ExitCode> {
    let report = kiln_disk::check::check_file(file, format)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for e in &report.errors {
            println!("{e}");
        }
        for l in &report.leaks {
            println!("{l}");
        }
        if report.errors.is_empty() && report.leaks.is_empty() {
            println!("No errors were found on the image.");
        } else {
            if !report.errors.is_empty() {
                println!("\n{} errors were found on the image.", report.errors.len());
            }
            if !report.leaks.is_empty() {
                println!(
                    "\n{} leaked clusters were found on the image.",
                    report.leaks.len()
                );
            }
        }
        if let (Some(a), Some(t)) = (report.allocated_clusters, report.total_clusters)
            && t > 0
        {
            let compressed = report.compressed_clusters.unwrap_or(0);
            println!(
                "{a}/{t} = {:.2}% allocated, {:.2}% compressed clusters",
                a as f64 * 100.0 / t as f64,
                compressed as f64 * 100.0 / t as f64
            );
        }
        if let Some(end) = report.image_end_offset {
            println!("Image end offset: {end}");
        }
    }
    Ok(match (report.errors.is_empty(), report.leaks.is_empty()) {
        (true, true) => ExitCode::SUCCESS,
        (false, _) => ExitCode::from(2),
        (true, false) => ExitCode::from(3),
    })
}
