//! VMDK against qemu-img, both ways, and kiln's refusal of unsafe VMDKs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use kiln_disk::inspect::inspect_file;
use kiln_disk::{Allocation, CreateOptions, Error, Format, OpenOptions, vmdk};
use proptest::prelude::*;
use tempfile::TempDir;

/// Spans three grain tables (32 MiB each) and ends mid-grain and mid-sector.
const SIZE: u64 = (70 << 20) + 1234 * 512 + 100;

/// qemu-img convert from raw to VMDK with `-o options`.
fn qemu_convert_to_vmdk(raw: &Path, out: &Path, options: &str) {
    let (src, dst) = (raw.to_str().unwrap(), out.to_str().unwrap());
    qemu_img_ok(&[
        "convert", "-f", "raw", "-O", "vmdk", "-o", options, src, dst,
    ]);
}

/// Reads every subformat qemu-img writes back equal to the source, with the
/// size and type qemu-img reports.
fn check_qemu_subformat(dir: &TempDir, raw: &Path, subformat: &str, size: u64) {
    let out = dir.path().join(format!("{subformat}.vmdk"));
    qemu_convert_to_vmdk(raw, &out, &format!("subformat={subformat}"));
    let qemu = qemu_info(&out, "vmdk");
    let in_one_file = matches!(subformat, "monolithicSparse" | "streamOptimized");
    let image = if in_one_file {
        open(&out)
    } else {
        let refused = kiln_disk::open(&out, &OpenOptions::default());
        assert!(
            matches!(refused, Err(Error::External { .. })),
            "{subformat}: extents in other files must be refused"
        );
        open_allowing_external(&out)
    };
    assert_same_guest(open(raw).as_ref(), image.as_ref(), subformat);
    let info = image.info();
    assert_eq!(info.format, Format::Vmdk);
    assert_eq!(
        info.virtual_size,
        qemu["virtual-size"].as_u64().unwrap(),
        "{subformat}"
    );
    assert_eq!(info.virtual_size, size.next_multiple_of(512), "{subformat}");
    assert_eq!(info.subformat.as_deref(), Some(subformat));
    assert_eq!(
        info.cluster_size,
        qemu["cluster-size"].as_u64(),
        "{subformat}"
    );
    assert_eq!(
        info.external_files.is_empty(),
        in_one_file,
        "{subformat}: {:?}",
        info.external_files
    );
    let file = std::fs::File::open(&out).unwrap();
    assert_eq!(
        vmdk::check(&file).unwrap(),
        Vec::<String>::new(),
        "{subformat}"
    );
    let safety = inspect_file(&out).unwrap();
    assert_eq!(
        safety.is_safe(),
        in_one_file,
        "{subformat}: {:?}",
        safety.problems
    );
}

#[test]
fn kiln_reads_every_vmdk_subformat_qemu_img_writes() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 1, SIZE);
    for subformat in [
        "monolithicSparse",
        "streamOptimized",
        "monolithicFlat",
        "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
    ] {
        check_qemu_subformat(&dir, &raw, subformat, SIZE);
    }
}

#[test]
fn split_extents_past_two_gib_read_back() {
    // Past 2 GiB qemu-img splits twoGbMaxExtent* images into several files.
    let dir = TempDir::new().unwrap();
    let size = (2 << 30) + (3 << 20) + 512;
    let raw = sparse_source(&dir, 2, size);
    for subformat in ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"] {
        check_qemu_subformat(&dir, &raw, subformat, size);
        let info = open_allowing_external(&dir.path().join(format!("{subformat}.vmdk"))).info();
        assert_eq!(
            info.external_files.len(),
            2,
            "{subformat}: {:?}",
            info.external_files
        );
    }
}

#[test]
fn zeroed_grains_read_as_zeros() {
    // With zeroed_grain=on qemu marks a zeroed grain with table entry 1.
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 8, 4 << 20);
    let out = dir.path().join("zeroed.vmdk");
    qemu_convert_to_vmdk(&raw, &out, "zeroed_grain=on");
    let before = open(&out);
    assert_eq!(
        before.block_status(0, 65536).unwrap().0,
        Allocation::Data,
        "the source has data at 0"
    );
    let dst = out.to_str().unwrap();
    qemu_io_ok(&["-f", "vmdk", "-c", "write -z 0 64k", dst]);
    let header = vmdk::SparseHeader::parse(&std::fs::read(&out).unwrap()[..512]).unwrap();
    let image = open(&out);
    assert_eq!(
        image.block_status(0, 65536).unwrap(),
        (Allocation::Zero, 65536)
    );
    let mut expected = vec![0u8; 4 << 20];
    open(&raw).read_at(&mut expected, 0).unwrap();
    expected[..65536].fill(0);
    let mut got = vec![1u8; 4 << 20];
    image.read_at(&mut got, 0).unwrap();
    assert!(got == expected);
    assert_ne!(header.flags & 4, 0, "the zeroed-grain flag is set");
    // qemu-img reads it the same way.
    let back = dir.path().join("back.raw");
    qemu_img_ok(&[
        "convert",
        "-f",
        "vmdk",
        "-O",
        "raw",
        dst,
        back.to_str().unwrap(),
    ]);
    assert_same_guest(open(&back).as_ref(), image.as_ref(), "zeroed grain");
}

fn stream_options(adapter: &str, threads: usize) -> CreateOptions {
    let mut o = CreateOptions::new(Format::Vmdk);
    o.apply(&format!(
        "subformat=streamOptimized,adapter_type={adapter},threads={threads}"
    ))
    .unwrap();
    o
}

#[test]
fn kiln_stream_optimized_passes_qemu_img_check_and_compare() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 3, SIZE);
    for (adapter, threads) in [("ide", 0), ("lsilogic", 1), ("buslogic", 3)] {
        let out = dir.path().join(format!("kiln-{adapter}.vmdk"));
        kiln_convert(&raw, &out, &stream_options(adapter, threads));
        let check = qemu_img_ok(&["check", "-f", "vmdk", out.to_str().unwrap()]);
        assert!(check.contains("No errors were found"), "{adapter}: {check}");
        qemu_compare(&raw, "raw", &out, "vmdk");
        let qemu = qemu_info(&out, "vmdk");
        assert_eq!(
            qemu["virtual-size"].as_u64(),
            Some(SIZE.next_multiple_of(512))
        );
        assert_eq!(
            qemu["format-specific"]["data"]["create-type"],
            "streamOptimized"
        );
        assert_eq!(
            qemu["format-specific"]["data"]["extents"][0]["compressed"],
            true
        );

        let image = open(&out);
        assert_same_guest(open(&raw).as_ref(), image.as_ref(), adapter);
        let info = image.info();
        assert_eq!(info.subformat.as_deref(), Some("streamOptimized"));
        assert!(
            info.details
                .contains(&("adapter type".into(), adapter.into())),
            "{:?}",
            info.details
        );
        let file = std::fs::File::open(&out).unwrap();
        assert_eq!(vmdk::check(&file).unwrap(), Vec::<String>::new());
        assert!(inspect_file(&out).unwrap().is_safe());
    }
}

#[test]
fn stream_optimized_layout_is_what_vmware_expects() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 4, 5 << 20);
    let out = dir.path().join("layout.vmdk");
    kiln_convert(&raw, &out, &stream_options("ide", 2));
    let bytes = std::fs::read(&out).unwrap();
    let header = vmdk::SparseHeader::parse(&bytes).unwrap();
    assert_eq!(header.version, 3);
    assert_eq!(
        header.gd_offset,
        u64::MAX,
        "the header leaves the grain directory to the footer"
    );
    assert_eq!(header.flags, 0x30001);
    let text = String::from_utf8_lossy(&bytes[512..512 * 21]);
    assert!(text.contains("createType=\"streamOptimized\""), "{text}");
    assert!(text.contains("ddb.adapterType = \"ide\""), "{text}");
    assert!(text.contains("ddb.virtualHWVersion"), "{text}");
    assert!(text.contains("RW 10240 SPARSE \"layout.vmdk\""), "{text}");
    let n = bytes.len();
    assert_eq!(&bytes[n - 512..], &[0u8; 512][..], "end-of-stream marker");
    assert_eq!(
        u32::from_le_bytes(bytes[n - 1536 + 12..n - 1536 + 16].try_into().unwrap()),
        3,
        "footer marker"
    );
    let footer = vmdk::SparseHeader::parse(&bytes[n - 1024..]).unwrap();
    assert_ne!(footer.gd_offset, u64::MAX);
    // Grains come first, each behind a marker naming its guest sector.
    let first = &bytes[header.overhead as usize * 512..];
    let lba = u64::from_le_bytes(first[..8].try_into().unwrap());
    assert_eq!(lba, 0, "the source has data in its first byte");
    assert_eq!(&first[12..14], &[0x78, 0x9c], "grains are zlib streams");
}

#[test]
fn oversized_disks_are_refused_before_anything_is_allocated() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("huge.vmdk");
    let o = stream_options("ide", 1);
    assert!(matches!(
        kiln_disk::create(&out, &o, 1 << 60),
        Err(Error::Usage(_))
    ));
    assert!(
        kiln_disk::create(&out, &o, 64 << 40).is_ok(),
        "64 TiB is within bounds"
    );
}

#[test]
fn zero_grains_are_never_written() {
    let dir = TempDir::new().unwrap();
    let raw = dir.path().join("zeros.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    poke(&raw, 3 << 20, b"one grain of data");
    // Explicit zeros, not a hole: convert hands them over only if non-zero.
    poke(&raw, 5 << 20, &vec![0u8; 1 << 20]);
    let out = dir.path().join("zeros.vmdk");
    kiln_convert(&raw, &out, &stream_options("ide", 0));
    let len = std::fs::metadata(&out).unwrap().len();
    // Header and descriptor (64 KiB), then in sectors: one small grain (1),
    // GT marker and table (1 + 4), GD marker and directory (1 + 1), footer
    // marker and footer (1 + 1), end of stream (1).
    assert_eq!(len, (64 << 10) + 11 * 512);
    qemu_compare(&raw, "raw", &out, "vmdk");
}

#[test]
fn extents_outside_the_file_are_refused() {
    let dir = TempDir::new().unwrap();
    let desc = dir.path().join("evil.vmdk");
    std::fs::write(
        &desc,
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n\
         RW 2048 FLAT \"/etc/passwd\" 0\n",
    )
    .unwrap();
    let refused = kiln_disk::open(&desc, &OpenOptions::default());
    match refused {
        Err(Error::External { path, .. }) => assert_eq!(path, "/etc/passwd"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("an extent outside the file was opened"),
    }
    let report = inspect_file(&desc).unwrap();
    assert!(!report.is_safe());
    assert!(
        report.problems.iter().any(|p| p.contains("/etc/passwd")),
        "{:?}",
        report.problems
    );
    // Allowed, the extent is read only for its declared size... which /etc/passwd lacks.
    let allowed = kiln_disk::open(
        &desc,
        &OpenOptions {
            allow_external: true,
            ..Default::default()
        },
    );
    assert!(allowed.is_err());
}

#[test]
fn child_images_are_refused() {
    let dir = TempDir::new().unwrap();
    let base = dir.path().join("base.vmdk");
    let child = dir.path().join("child.vmdk");
    qemu_img_ok(&["create", "-f", "vmdk", base.to_str().unwrap(), "8M"]);
    qemu_img_ok(&[
        "create",
        "-f",
        "vmdk",
        "-b",
        "base.vmdk",
        "-F",
        "vmdk",
        child.to_str().unwrap(),
    ]);
    let refused = kiln_disk::open(&child, &OpenOptions::default());
    assert!(
        matches!(refused, Err(Error::External { ref path, .. }) if path == "base.vmdk"),
        "{:?}",
        refused.err()
    );
    let report = inspect_file(&child).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("parent")),
        "{:?}",
        report.problems
    );
}

/// A monolithicSparse image from qemu-img with its header fields at hand.
fn qemu_sparse(dir: &TempDir) -> (PathBuf, vmdk::SparseHeader) {
    let raw = sparse_source(dir, 5, SIZE);
    let out = dir.path().join("sparse.vmdk");
    qemu_convert_to_vmdk(&raw, &out, "subformat=monolithicSparse");
    let header = vmdk::SparseHeader::parse(&std::fs::read(&out).unwrap()[..512]).unwrap();
    (out, header)
}

#[test]
fn tables_past_the_end_or_overlapping_are_reported() {
    let dir = TempDir::new().unwrap();
    let (out, header) = qemu_sparse(&dir);
    let gd = header.gd_offset * 512;

    let past = damaged_copy(&out, "past.vmdk", gd, &0x0fff_ffffu32.to_le_bytes());
    assert_problem(&past, &["grain table 0", "past the end"]);
    assert!(
        !read_everything(open(&past).as_ref(), u64::MAX),
        "reading through a table past the end must fail"
    );

    let first_gt = std::fs::read(&out).unwrap()[gd as usize..gd as usize + 4].to_vec();
    let shared = damaged_copy(&out, "shared.vmdk", gd + 4, &first_gt);
    assert_problem(&shared, &["grain table 1", "overlaps grain table 0"]);
    let check = vmdk::check(&std::fs::File::open(&shared).unwrap()).unwrap();
    assert!(check.iter().any(|p| p.contains("redundant")), "{check:?}");

    // A grain table over the embedded descriptor.
    let on_header = damaged_copy(&out, "on-header.vmdk", gd, &1u32.to_le_bytes());
    assert_problem(
        &on_header,
        &["embedded descriptor", "overlaps grain table 0"],
    );

    let absurd_grain = damaged_copy(&out, "grain.vmdk", 20, &(1u64 << 40).to_le_bytes());
    assert_problem(&absurd_grain, &["grain size"]);
    assert!(kiln_disk::open(&absurd_grain, &OpenOptions::default()).is_err());
    let absurd_capacity = damaged_copy(&out, "capacity.vmdk", 12, &(u64::MAX / 2).to_le_bytes());
    assert_problem(&absurd_capacity, &["capacity"]);
    assert!(kiln_disk::open(&absurd_capacity, &OpenOptions::default()).is_err());
}

#[test]
fn truncated_streams_are_refused_not_misread() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 6, 9 << 20);
    let out = dir.path().join("whole.vmdk");
    kiln_convert(&raw, &out, &stream_options("ide", 0));
    let len = std::fs::metadata(&out).unwrap().len();
    for cut in [len - 512, len / 2, 600, 100] {
        let short = truncated_copy(&out, cut);
        let opts = OpenOptions {
            format: Some(Format::Vmdk),
            ..Default::default()
        };
        assert!(kiln_disk::open(&short, &opts).is_err(), "cut at {cut}");
        assert!(!inspect_file(&short).unwrap().is_safe(), "cut at {cut}");
    }
}

/// Images to mutate: one kiln stream, one qemu monolithicSparse, one descriptor.
fn seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let raw = sparse_source(&dir, 7, 3 << 20);
        let stream = dir.path().join("s.vmdk");
        kiln_convert(&raw, &stream, &stream_options("ide", 1));
        let sparse = dir.path().join("m.vmdk");
        qemu_convert_to_vmdk(&raw, &sparse, "subformat=monolithicSparse");
        let flat = dir.path().join("f.vmdk");
        qemu_convert_to_vmdk(&raw, &flat, "subformat=monolithicFlat");
        [stream, sparse, flat]
            .iter()
            .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
            .collect()
    })
}

proptest! {
    #[test]
    fn mutated_vmdks_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<bool>()), 1..12),
        cut in proptest::option::of(any::<u32>()),
    ) {
        let (_, original) = &seeds()[which];
        let mut bytes = original.clone();
        for (at, value, near_end) in edits {
            // Hit the header and tables at the start, or the footer at the end.
            let at = at as usize % bytes.len().min(1 << 16);
            let at = if near_end { bytes.len() - 1 - at % bytes.len().min(2048) } else { at };
            bytes[at] = value;
        }
        let parsers = Parsers { format: Format::Vmdk, inspect_structure: vmdk::inspect_structure, check: vmdk::check };
        survive(&parsers, bytes, cut);
    }
}

proptest! {
    // Each case converts an image: fewer cases than the parsers get.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_sparse_content_round_trips(seed in any::<u64>(), sectors in 1u64..20_000, tail in 0u64..512) {
        let dir = TempDir::new().unwrap();
        let size = sectors * 512 + tail;
        let raw = sparse_source(&dir, seed, size);
        let out = dir.path().join("rt.vmdk");
        kiln_convert(&raw, &out, &stream_options("lsilogic", 2));
        assert_same_guest(open(&raw).as_ref(), open(&out).as_ref(), "round trip");
    }
}
