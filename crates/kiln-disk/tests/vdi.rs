//! VDI images qemu-img writes, read by kiln, and kiln's refusal of unsafe VDIs.

mod common;

use std::path::PathBuf;

use common::*;
use kiln_disk::inspect::inspect_file;
use kiln_disk::{Allocation, Format, OpenOptions, vdi};
use proptest::prelude::*;
use tempfile::TempDir;

/// Several 1 MiB blocks, ending mid-block.
const SIZE: u64 = (40 << 20) + 1234 * 512;

fn qemu_vdi(dir: &TempDir, seed: u64, size: u64, static_: bool) -> (PathBuf, PathBuf) {
    let raw = sparse_source(dir, seed, size);
    let out = dir.path().join(format!("q-{seed}-{static_}.vdi"));
    let opts = format!("static={}", if static_ { "on" } else { "off" });
    qemu_img_ok(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vdi",
        "-o",
        &opts,
        raw.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    (raw, out)
}

#[test]
fn kiln_reads_static_and_dynamic_vdis_from_qemu_img() {
    let dir = TempDir::new().unwrap();
    for static_ in [false, true] {
        let (raw, out) = qemu_vdi(&dir, 1, SIZE, static_);
        let image = open(&out);
        assert_same_guest(
            open(&raw).as_ref(),
            image.as_ref(),
            &format!("static={static_}"),
        );
        let info = image.info();
        let qemu = qemu_info(&out, "vdi");
        assert_eq!(info.format, Format::Vdi);
        assert_eq!(info.virtual_size, qemu["virtual-size"].as_u64().unwrap());
        assert_eq!(info.virtual_size, SIZE);
        assert_eq!(info.cluster_size, qemu["cluster-size"].as_u64());
        assert_eq!(
            info.subformat.as_deref(),
            Some(if static_ { "static" } else { "dynamic" })
        );
        let zero_blocks = (0..SIZE >> 20)
            .filter(|b| image.block_status(b << 20, 1 << 20).unwrap().0 == Allocation::Zero)
            .count();
        assert_eq!(
            zero_blocks > 0,
            !static_,
            "unallocated blocks read as zeros without reading the file"
        );
        assert_eq!(
            vdi::check(&std::fs::File::open(&out).unwrap()).unwrap(),
            Vec::<String>::new()
        );
        let safety = inspect_file(&out).unwrap();
        assert!(safety.is_safe(), "{:?}", safety.problems);
    }
}

/// The block map of a VDI: (offset of the map, entries).
fn block_map(bytes: &[u8]) -> (u64, Vec<u32>) {
    let le = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let (offset, count) = (le(340) as usize, le(384) as usize);
    (
        offset as u64,
        (0..count).map(|i| le(offset + 4 * i)).collect(),
    )
}

#[test]
fn block_maps_past_the_end_or_overlapping_are_reported() {
    let dir = TempDir::new().unwrap();
    let (_, out) = qemu_vdi(&dir, 2, 16 << 20, false);
    let (map_at, map) = block_map(&std::fs::read(&out).unwrap());
    let allocated: Vec<usize> = (0..map.len()).filter(|&i| map[i] < 0xffff_fffe).collect();
    assert!(allocated.len() >= 2);
    let (a, b) = (allocated[0], allocated[1]);
    let entry = |i: usize| map_at + 4 * i as u64;

    let past = damaged_copy(&out, "past.vdi", entry(a), &5000u32.to_le_bytes());
    assert_problem(&past, &[&format!("data block {a}"), "past the end"]);
    assert!(
        !read_everything(open(&past).as_ref(), u64::MAX),
        "a block past the end can not be read"
    );

    let shared = damaged_copy(&out, "shared.vdi", entry(b), &map[a].to_le_bytes());
    assert_problem(
        &shared,
        &[
            &format!("data block {b}"),
            &format!("overlaps data block {a}"),
        ],
    );

    let map_over_header = damaged_copy(&out, "map-over-header.vdi", 340, &64u32.to_le_bytes());
    assert_problem(&map_over_header, &["overlaps the header"]);
    assert!(kiln_disk::open(&map_over_header, &OpenOptions::default()).is_err());

    let block_size = damaged_copy(&out, "block-size.vdi", 376, &(3u32 << 20).to_le_bytes());
    assert_problem(&block_size, &["block size"]);
    let disk_size = damaged_copy(&out, "disk-size.vdi", 368, &u64::MAX.to_le_bytes());
    assert_problem(&disk_size, &["disk size"]);
    assert!(kiln_disk::open(&disk_size, &OpenOptions::default()).is_err());
}

#[test]
fn discarded_blocks_read_as_zeros() {
    let dir = TempDir::new().unwrap();
    let (raw, out) = qemu_vdi(&dir, 5, 16 << 20, false);
    let (map_at, map) = block_map(&std::fs::read(&out).unwrap());
    let a = (0..map.len()).find(|&i| map[i] < 0xffff_fffe).unwrap();
    poke(&out, map_at + 4 * a as u64, &0xffff_fffeu32.to_le_bytes());
    let image = open(&out);
    assert_eq!(
        image.block_status((a as u64) << 20, 1 << 20).unwrap(),
        (Allocation::Zero, 1 << 20)
    );
    let mut expected = vec![0u8; 16 << 20];
    open(&raw).read_at(&mut expected, 0).unwrap();
    expected[a << 20..(a + 1) << 20].fill(0);
    let mut got = vec![1u8; 16 << 20];
    image.read_at(&mut got, 0).unwrap();
    assert!(
        got == expected,
        "block {a} was discarded: it reads as zeros, the rest as before"
    );
    assert!(inspect_file(&out).unwrap().is_safe());
}

#[test]
fn truncated_vdis_are_refused_not_misread() {
    let dir = TempDir::new().unwrap();
    let (_, out) = qemu_vdi(&dir, 3, 8 << 20, true);
    let len = std::fs::metadata(&out).unwrap().len();
    for cut in [len - 1, len / 2, 600, 100] {
        let short = truncated_copy(&out, cut);
        assert!(!inspect_file(&short).unwrap().is_safe(), "cut at {cut}");
        let opts = OpenOptions {
            format: Some(Format::Vdi),
            ..Default::default()
        };
        let readable =
            kiln_disk::open(&short, &opts).map(|i| read_everything(i.as_ref(), u64::MAX));
        assert!(
            !matches!(readable, Ok(true)),
            "cut at {cut}: read as if whole"
        );
    }
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        [false, true]
            .iter()
            .map(|&s| std::fs::read(qemu_vdi(&dir, 4, 3 << 20, s).1).unwrap())
            .collect()
    })
}

proptest! {
    #[test]
    fn mutated_vdis_never_panic(
        which in 0usize..2,
        edits in proptest::collection::vec((0usize..1024, any::<u8>()), 1..12),
        cut in proptest::option::of(any::<u32>()),
    ) {
        let mut bytes = seeds()[which].clone();
        for (at, value) in edits {
            bytes[at] = value;
        }
        let parsers = Parsers { format: Format::Vdi, inspect_structure: vdi::inspect_structure, check: vdi::check };
        survive(&parsers, bytes, cut);
    }
}
