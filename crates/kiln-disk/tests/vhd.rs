//! VHD ("vpc") against qemu-img, both ways, and kiln's refusal of unsafe VHDs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use kiln_disk::inspect::inspect_file;
use kiln_disk::vhd::{self, Footer, Geometry};
use kiln_disk::{Allocation, CreateOptions, Error, Format, OpenOptions};
use proptest::prelude::*;
use tempfile::TempDir;

/// Several 2 MiB blocks, ending mid-block and mid-sector.
const SIZE: u64 = (70 << 20) + 1234 * 512 + 100;

fn vhd_options(list: &str) -> CreateOptions {
    let mut o = CreateOptions::new(Format::Vhd);
    o.apply(list).unwrap();
    o
}

const QEMU_VARIANTS: [&str; 4] = [
    "subformat=fixed",
    "subformat=dynamic",
    "subformat=fixed,force_size=on",
    "subformat=dynamic,force_size=on",
];

#[test]
fn kiln_reads_every_vhd_qemu_img_writes() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 1, SIZE);
    for (i, variant) in QEMU_VARIANTS.iter().enumerate() {
        let out = dir.path().join(format!("q{i}.vhd"));
        qemu_img_ok(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            variant,
            raw.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        let image = open(&out);
        assert_same_guest(open(&raw).as_ref(), image.as_ref(), variant);
        let info = image.info();
        let qemu = qemu_info(&out, "vpc");
        assert_eq!(info.format, Format::Vhd);
        assert_eq!(
            info.virtual_size,
            qemu["virtual-size"].as_u64().unwrap(),
            "{variant}"
        );
        assert_eq!(
            info.cluster_size,
            qemu["cluster-size"].as_u64(),
            "{variant}"
        );
        let fixed = variant.contains("fixed");
        assert_eq!(
            info.subformat.as_deref(),
            Some(if fixed { "fixed" } else { "dynamic" })
        );
        if variant.contains("force_size") {
            assert_eq!(
                info.virtual_size,
                SIZE.next_multiple_of(512),
                "{variant}: force_size keeps the size"
            );
        }
        if !fixed {
            // Unallocated blocks are reported as zeros, so convert skips them.
            let (alloc, len) = image.block_status(8 << 20, 2 << 20).unwrap();
            let mut block = vec![1u8; len as usize];
            image.read_at(&mut block, 8 << 20).unwrap();
            assert!(alloc == Allocation::Data || block.iter().all(|&b| b == 0));
            let zeros = (0..info.virtual_size / (2 << 20))
                .filter(|b| {
                    image.block_status(b * (2 << 20), 2 << 20).unwrap().0 == Allocation::Zero
                })
                .count();
            assert!(
                zeros > 0,
                "{variant}: the sparse source leaves some blocks unallocated"
            );
        }
        assert_eq!(
            vhd::check(&std::fs::File::open(&out).unwrap()).unwrap(),
            Vec::<String>::new(),
            "{variant}"
        );
        let safety = inspect_file(&out).unwrap();
        assert!(safety.is_safe(), "{variant}: {:?}", safety.problems);
    }
}

#[test]
fn sizes_round_as_qemu_img_rounds_them() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("size.vhd");
    let sizes = [
        1000,
        512,
        1 << 20,
        3 << 20,
        100 << 20,
        (1 << 30) + 12345,
        127 << 30,
        200 << 30,
        2040 << 30,
    ];
    for size in sizes {
        for force in [false, true] {
            let opts = if force {
                "subformat=dynamic,force_size=on"
            } else {
                "subformat=dynamic"
            };
            qemu_img_ok(&[
                "create",
                "-q",
                "-f",
                "vpc",
                "-o",
                opts,
                out.to_str().unwrap(),
                &size.to_string(),
            ]);
            let qemu = qemu_info(&out, "vpc")["virtual-size"].as_u64().unwrap();
            assert_eq!(
                vhd::new_disk_size(size, force).unwrap().0,
                qemu,
                "size {size} force {force}"
            );
        }
    }
    assert!(vhd::new_disk_size((2040 << 30) + 512, true).is_err());
    let o = vhd_options("subformat=dynamic");
    assert!(kiln_disk::create(&out, &o, (2040 << 30) + 512).is_err());
    let too_large = qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        out.to_str().unwrap(),
        &((2040u64 << 30) + 512).to_string(),
    ]);
    assert!(
        !too_large.status.success(),
        "qemu-img agrees 2040 GiB is the limit"
    );
}

#[test]
fn everything_kiln_writes_qemu_img_reads_identically() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 2, SIZE);
    // qemu-img has no check for vpc: verify that, then rely on info and compare.
    let probe = dir.path().join("probe.vhd");
    kiln_convert(&raw, &probe, &vhd_options("subformat=dynamic"));
    let check = qemu_img(&["check", "-f", "vpc", probe.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&check.stderr).contains("does not support checks"));

    for (i, variant) in QEMU_VARIANTS.iter().enumerate() {
        let out = dir.path().join(format!("k{i}.vhd"));
        kiln_convert(&raw, &out, &vhd_options(variant));
        let force = variant.contains("force_size");
        let expected = vhd::new_disk_size(SIZE, force).unwrap().0;
        let qemu = qemu_info(&out, "vpc");
        assert_eq!(qemu["virtual-size"].as_u64(), Some(expected), "{variant}");
        qemu_compare(&raw, "raw", &out, "vpc");
        let image = open(&out);
        assert_eq!(image.virtual_size(), expected, "{variant}");
        assert_same_guest(open(&raw).as_ref(), image.as_ref(), variant);
        assert_eq!(
            vhd::check(&std::fs::File::open(&out).unwrap()).unwrap(),
            Vec::<String>::new(),
            "{variant}"
        );
        assert!(inspect_file(&out).unwrap().is_safe(), "{variant}");
        // qemu-img's own converting read of kiln's file agrees byte for byte.
        let back = dir.path().join(format!("k{i}.raw"));
        qemu_img_ok(&[
            "convert",
            "-f",
            "vpc",
            "-O",
            "raw",
            out.to_str().unwrap(),
            back.to_str().unwrap(),
        ]);
        assert_same_guest(open(&raw).as_ref(), open(&back).as_ref(), variant);
    }
}

#[test]
fn azure_fixed_vhds_keep_their_whole_mib_size() {
    let dir = TempDir::new().unwrap();
    let size = 64 << 20;
    let raw = sparse_source(&dir, 3, size);
    vhd::check_azure_size(size).unwrap();
    let out = dir.path().join("azure.vhd");
    kiln_convert(&raw, &out, &vhd_options("subformat=fixed,force_size=on"));
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        size + 512,
        "data plus one footer"
    );
    assert_eq!(qemu_info(&out, "vpc")["virtual-size"].as_u64(), Some(size));
    qemu_compare(&raw, "raw", &out, "vpc");

    // Without force_size the size becomes whole CHS cylinders, which Azure refuses.
    let chs = dir.path().join("chs.vhd");
    kiln_convert(&raw, &chs, &vhd_options("subformat=fixed"));
    let rounded = qemu_info(&chs, "vpc")["virtual-size"].as_u64().unwrap();
    assert_ne!(rounded, size);
    assert!(vhd::check_azure_size(rounded).is_err());
    assert_eq!(vhd::azure_size(rounded), rounded.next_multiple_of(1 << 20));
}

/// A kiln dynamic VHD and its BAT entries (big-endian u32 at offset 1536).
fn dynamic_vhd(dir: &TempDir, seed: u64) -> (PathBuf, Vec<u32>) {
    let raw = sparse_source(dir, seed, 16 << 20);
    let out = dir.path().join(format!("dyn-{seed}.vhd"));
    kiln_convert(&raw, &out, &vhd_options("subformat=dynamic"));
    let bytes = std::fs::read(&out).unwrap();
    let entries = u32::from_be_bytes(bytes[512 + 28..512 + 32].try_into().unwrap()) as usize;
    let bat = (0..entries)
        .map(|i| u32::from_be_bytes(bytes[1536 + 4 * i..1540 + 4 * i].try_into().unwrap()))
        .collect();
    (out, bat)
}

#[test]
fn bats_past_the_end_or_overlapping_are_reported() {
    let dir = TempDir::new().unwrap();
    let (out, bat) = dynamic_vhd(&dir, 4);
    let allocated: Vec<usize> = (0..bat.len()).filter(|&i| bat[i] != u32::MAX).collect();
    assert!(allocated.len() >= 2, "{bat:x?}");
    let (a, b) = (allocated[0], allocated[1]);
    let entry = |i: usize| 1536 + 4 * i as u64;

    let past = damaged_copy(&out, "past.vhd", entry(a), &0x00ff_ffffu32.to_be_bytes());
    assert_problem(&past, &[&format!("block {a}"), "past the end"]);
    let mut buf = vec![0u8; 4096];
    let read = open(&past).read_at(&mut buf, a as u64 * (2 << 20));
    assert!(read.is_err(), "a block past the end can not be read");

    let shared = damaged_copy(&out, "shared.vhd", entry(b), &bat[a].to_be_bytes());
    assert_problem(
        &shared,
        &[&format!("block {b}"), &format!("overlaps block {a}")],
    );

    let on_header = damaged_copy(&out, "on-header.vhd", entry(a), &1u32.to_be_bytes());
    assert_problem(&on_header, &["overlaps dynamic disk header"]);

    let absurd = damaged_copy(&out, "absurd.vhd", 512 + 28, &u32::MAX.to_be_bytes()); // max table entries
    assert_problem(&absurd, &["BAT", "past the end"]);
    assert!(kiln_disk::open(&absurd, &OpenOptions::default()).is_err());
}

#[test]
fn truncated_and_damaged_vhds_are_refused() {
    let dir = TempDir::new().unwrap();
    let (out, _) = dynamic_vhd(&dir, 5);
    let len = std::fs::metadata(&out).unwrap().len();
    for cut in [len - 512, len / 2, 3000] {
        let short = truncated_copy(&out, cut);
        assert!(!inspect_file(&short).unwrap().is_safe(), "cut at {cut}");
        // The footer copy at the start still opens the disk (as in qemu):
        // without its footer only, it reads whole; cut shorter, it can not.
        let readable = kiln_disk::open(&short, &OpenOptions::default())
            .map(|i| read_everything(i.as_ref(), u64::MAX));
        assert_eq!(
            matches!(readable, Ok(true)),
            cut == len - 512,
            "cut at {cut}"
        );
    }
    // A fixed disk has no copy: without its footer it is no VHD.
    let raw = sparse_source(&dir, 6, 4 << 20);
    let fixed = dir.path().join("fixed.vhd");
    kiln_convert(&raw, &fixed, &vhd_options("subformat=fixed"));
    let short = truncated_copy(&fixed, std::fs::metadata(&fixed).unwrap().len() - 100);
    let opts = OpenOptions {
        format: Some(Format::Vhd),
        ..Default::default()
    };
    assert!(kiln_disk::open(&short, &opts).is_err());
    // Footers whose checksums do not add up.
    let bad = damaged_copy(&out, "bad.vhd", len - 512 + 48, &[0x7f]);
    poke(&bad, 48, &[0x7f]);
    assert!(kiln_disk::open(&bad, &OpenOptions::default()).is_err());
    assert_problem(&bad, &["checksum"]);
}

fn vhd_checksum(bytes: &[u8], at: usize) -> [u8; 4] {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(at..at + 4).contains(i))
        .fold(0u32, |s, (_, &b)| s.wrapping_add(b as u32));
    (!sum).to_be_bytes()
}

/// Writes a differencing VHD over `parent` by hand (kiln and qemu-img do not
/// create them): block 1 holds 0x41 in its first 8 sectors, everything else
/// reads from the parent, found through a relative Windows path locator.
fn differencing_child(dir: &Path, parent: &Path) -> PathBuf {
    let parent_bytes = std::fs::read(parent).unwrap();
    let parent_footer = Footer::parse(parent_bytes[..512].try_into().unwrap()).unwrap();
    let entries = u32::from_be_bytes(parent_bytes[512 + 28..512 + 32].try_into().unwrap());
    let mut footer = Footer::new(
        4,
        parent_footer.current_size,
        parent_footer.geometry,
        [9; 16],
    );
    footer.data_offset = 512;
    let footer = footer.serialize();

    let bat_len = (entries as usize * 4).next_multiple_of(512);
    let locator_at = 1536 + bat_len;
    let block_at = locator_at + 512;
    let mut header = [0u8; 1024];
    header[..8].copy_from_slice(b"cxsparse");
    header[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    header[16..24].copy_from_slice(&1536u64.to_be_bytes());
    header[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    header[28..32].copy_from_slice(&entries.to_be_bytes());
    header[32..36].copy_from_slice(&(2u32 << 20).to_be_bytes());
    header[40..56].copy_from_slice(&parent_footer.uuid);
    for (i, unit) in "parent.vhd".encode_utf16().enumerate() {
        header[64 + 2 * i..66 + 2 * i].copy_from_slice(&unit.to_be_bytes());
    }
    let locator: Vec<u8> = ".\\parent.vhd"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    header[576..580].copy_from_slice(b"W2ru");
    header[580..584].copy_from_slice(&1u32.to_be_bytes());
    header[584..588].copy_from_slice(&(locator.len() as u32).to_be_bytes());
    header[592..600].copy_from_slice(&(locator_at as u64).to_be_bytes());
    let sum = vhd_checksum(&header, 36);
    header[36..40].copy_from_slice(&sum);

    let mut file = vec![0u8; block_at + 512 + (2 << 20)];
    file[..512].copy_from_slice(&footer);
    file[512..1536].copy_from_slice(&header);
    file[1536..1536 + bat_len].fill(0xff);
    file[1540..1544].copy_from_slice(&((block_at / 512) as u32).to_be_bytes());
    file[locator_at..locator_at + locator.len()].copy_from_slice(&locator);
    file[block_at] = 0xff; // sectors 0..8 of block 1 are the child's
    file[block_at + 512..block_at + 512 + 4096].fill(0x41);
    file.extend_from_slice(&footer);
    let path = dir.join("child.vhd");
    std::fs::write(&path, file).unwrap();
    path
}

#[test]
fn differencing_disks_read_their_parent_only_when_allowed() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 8, 8 << 20);
    let parent = dir.path().join("parent.vhd");
    kiln_convert(
        &raw,
        &parent,
        &vhd_options("subformat=dynamic,force_size=on"),
    );
    let child = differencing_child(dir.path(), &parent);

    match kiln_disk::open(&child, &OpenOptions::default()) {
        Err(Error::External { path, .. }) => assert_eq!(path, "./parent.vhd"),
        other => panic!(
            "a differencing disk must be refused by default: {:?}",
            other.err()
        ),
    }
    let report = inspect_file(&child).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("parent") && p.contains("parent.vhd")),
        "{report:?}"
    );
    assert!(
        vhd::check(&std::fs::File::open(&child).unwrap())
            .unwrap()
            .is_empty()
    );

    let image = open_allowing_external(&child);
    assert_eq!(image.info().backing_file.as_deref(), Some("./parent.vhd"));
    let size = image.virtual_size() as usize;
    let mut expected = vec![0u8; size];
    open(&raw).read_at(&mut expected[..8 << 20], 0).unwrap();
    expected[2 << 20..(2 << 20) + 4096].fill(0x41);
    let mut got = vec![0u8; size];
    image.read_at(&mut got, 0).unwrap();
    assert!(got == expected, "the child's sectors over the parent's");
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let raw = sparse_source(&dir, 9, 5 << 20);
        let kiln = dir.path().join("k.vhd");
        kiln_convert(&raw, &kiln, &vhd_options("subformat=dynamic"));
        let qemu = dir.path().join("q.vhd");
        qemu_img_ok(&[
            "convert",
            "-O",
            "vpc",
            raw.to_str().unwrap(),
            qemu.to_str().unwrap(),
        ]);
        let parent = dir.path().join("parent.vhd");
        std::fs::copy(&kiln, &parent).unwrap();
        let child = differencing_child(dir.path(), &parent);
        [kiln, qemu, child]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    })
}

proptest! {
    #[test]
    fn mutated_vhds_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<bool>()), 1..12),
        fix_checksums in any::<bool>(),
        cut in proptest::option::of(any::<u32>()),
    ) {
        let mut bytes = seeds()[which].clone();
        for (at, value, near_end) in edits {
            let at = at as usize % 4096;
            let at = if near_end { bytes.len() - 1 - at % 512 } else { at };
            bytes[at] = value;
        }
        if fix_checksums {
            // Make the damage pass the checksums, to reach the deeper parsers.
            let end = bytes.len() - 512;
            let sum = vhd_checksum(&bytes[end..], 64);
            bytes[end + 64..end + 68].copy_from_slice(&sum);
            let sum = vhd_checksum(&bytes[..512], 64);
            bytes[64..68].copy_from_slice(&sum);
        }
        let parsers = Parsers { format: Format::Vhd, inspect_structure: vhd::inspect_structure, check: vhd::check };
        survive(&parsers, bytes, cut);
    }
}

proptest! {
    // Each case converts an image: fewer cases than the parsers get.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_sparse_content_round_trips(
        seed in any::<u64>(),
        sectors in 1u64..20_000,
        fixed in any::<bool>(),
        force in any::<bool>(),
    ) {
        let dir = TempDir::new().unwrap();
        let raw = sparse_source(&dir, seed, sectors * 512);
        let out = dir.path().join("rt.vhd");
        let o = vhd_options(&format!("subformat={},force_size={}", if fixed { "fixed" } else { "dynamic" }, force));
        kiln_convert(&raw, &out, &o);
        assert_same_guest(open(&raw).as_ref(), open(&out).as_ref(), "round trip");
        let geometry = Footer::parse(std::fs::read(&out).unwrap().rchunks(512).next().unwrap().try_into().unwrap()).unwrap().geometry;
        prop_assert_eq!(geometry == Geometry { cylinders: 65535, heads: 16, sectors: 255 }, force || sectors > 267_382_800);
    }
}
