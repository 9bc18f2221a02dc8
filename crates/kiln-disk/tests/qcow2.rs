//! qcow2 against qemu-img, both ways.

mod common;

use std::path::Path;

use common::*;
use kiln_disk::{CreateOptions, Format, OpenOptions, qcow2};
use proptest::prelude::*;
use tempfile::TempDir;

/// A size that ends mid-cluster (qemu keeps sizes in whole sectors).
const SIZE: u64 = (48 << 20) + 25 * 512;

#[test]
fn kiln_reads_every_qcow2_qemu_img_writes() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 1, SIZE);
    let variants: &[&[&str]] = &[
        &["-o", "compat=0.10"],
        &["-o", "compat=1.1"],
        &["-o", "cluster_size=512"],
        &["-o", "cluster_size=4k"],
        &["-o", "cluster_size=2M"],
        &["-c", "-o", "compression_type=zlib"],
        &["-c", "-o", "compression_type=zstd"],
        &["-c", "-o", "compat=0.10"],
        &["-c", "-o", "compression_type=zstd,cluster_size=4k"],
        &["-o", "extended_l2=on"],
        &["-o", "extended_l2=on,cluster_size=2M"],
        &["-o", "lazy_refcounts=on"],
        &["-o", "refcount_bits=1"],
        &["-o", "refcount_bits=64"],
        &["-o", "preallocation=metadata"],
        &["-o", "preallocation=full"],
    ];
    for (i, extra) in variants.iter().enumerate() {
        let out = dir.path().join(format!("q{i}.qcow2"));
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(extra);
        args.extend([raw.to_str().unwrap(), out.to_str().unwrap()]);
        qemu_img_ok(&args);
        let image = open(&out);
        assert_eq!(image.info().format, Format::Qcow2);
        assert_same_guest(
            open(&raw).as_ref(),
            image.as_ref(),
            &format!("qemu-img {extra:?}"),
        );
        let report = kiln_disk::check::check_file(&out, None).unwrap();
        assert!(
            report.errors.is_empty() && report.leaks.is_empty(),
            "{extra:?}: kiln check: {report:?}"
        );
        let safety = kiln_disk::inspect::inspect_file(&out).unwrap();
        assert!(safety.is_safe(), "{extra:?}: {:?}", safety.problems);
    }
}

#[test]
fn info_reports_what_qemu_img_wrote() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 2, SIZE);
    let out = dir.path().join("zstd.qcow2");
    qemu_img_ok(&[
        "convert",
        "-O",
        "qcow2",
        "-c",
        "-o",
        "compression_type=zstd,cluster_size=128k",
        raw.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let info = open(&out).info();
    assert_eq!(info.virtual_size, SIZE);
    assert_eq!(info.cluster_size, Some(128 << 10));
    assert_eq!(info.compression.as_deref(), Some("zstd"));
    assert_eq!(info.subformat.as_deref(), Some("compat 1.1"));
    assert!(!info.dirty && !info.corrupt);
}

#[test]
fn snapshots_are_listed_and_the_active_layer_read() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 3, SIZE);
    let out = dir.path().join("snap.qcow2");
    qemu_img_ok(&[
        "convert",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    qemu_img_ok(&["snapshot", "-c", "first", out.to_str().unwrap()]);
    qemu_img_ok(&["snapshot", "-c", "second", out.to_str().unwrap()]);
    let image = open(&out);
    let names: Vec<_> = image
        .info()
        .snapshots
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["first", "second"]);
    assert_same_guest(open(&raw).as_ref(), image.as_ref(), "image with snapshots");
    // Shared clusters carry refcount 2 and more: kiln's check must agree with qemu's.
    let report = kiln_disk::check::check_file(&out, None).unwrap();
    assert!(
        report.errors.is_empty() && report.leaks.is_empty(),
        "{report:?}"
    );
}

#[test]
fn backing_chains_are_followed_only_when_allowed() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 4, SIZE);
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img_ok(&[
        "convert",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        base.to_str().unwrap(),
    ]);
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        top.to_str().unwrap(),
    ]);
    // Write into the top layer so the chain has data at both levels.
    let write = format!("write -P 0x41 {} 4096", 4 << 20);
    qemu_io_ok(&["-f", "qcow2", "-c", &write, top.to_str().unwrap()]);

    let refused = kiln_disk::open(&top, &OpenOptions::default());
    assert!(
        matches!(refused, Err(kiln_disk::Error::External { .. })),
        "a backing file must be refused by default"
    );
    let allowed = kiln_disk::open(
        &top,
        &OpenOptions {
            allow_external: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(allowed.info().backing_file.as_deref(), Some("base.qcow2"));
    let mut expected = vec![0u8; SIZE as usize];
    open(&raw).read_at(&mut expected, 0).unwrap();
    expected[4 << 20..(4 << 20) + 4096].fill(0x41);
    let mut got = vec![0u8; SIZE as usize];
    allowed.read_at(&mut got, 0).unwrap();
    assert!(
        got == expected,
        "the chain reads the top layer over the base"
    );
    let safety = kiln_disk::inspect::inspect_file(&top).unwrap();
    assert!(
        !safety.is_safe() && safety.problems.iter().any(|p| p.contains("backing file")),
        "{safety:?}"
    );
}

#[test]
fn everything_kiln_writes_passes_qemu_img_check_and_compare() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 5, SIZE);
    let cases: &[&str] = &[
        "",
        "compat=0.10",
        "cluster_size=512",
        "cluster_size=4k",
        "cluster_size=2M",
        "compat=0.10,cluster_size=16k",
    ];
    for (i, opts) in cases.iter().enumerate() {
        for compress in [false, true] {
            for algo in ["zlib", "zstd"] {
                if algo == "zstd" && (!compress || opts.contains("0.10")) {
                    continue;
                }
                let mut o = CreateOptions::new(Format::Qcow2);
                o.apply(opts).unwrap();
                o.compress = compress;
                o.apply(&format!("compression_type={algo}")).unwrap();
                let out = dir.path().join(format!("k{i}-{compress}-{algo}.qcow2"));
                kiln_convert(&raw, &out, &o);
                let what = format!("kiln -o {opts} compress={compress} {algo}");
                let check = qemu_img(&["check", out.to_str().unwrap()]);
                assert!(
                    check.status.success(),
                    "{what}: qemu-img check: {}",
                    String::from_utf8_lossy(&check.stdout)
                );
                let cmp = qemu_img_ok(&[
                    "compare",
                    "-f",
                    "raw",
                    "-F",
                    "qcow2",
                    raw.to_str().unwrap(),
                    out.to_str().unwrap(),
                ]);
                assert!(cmp.contains("identical"), "{what}: {cmp}");
                assert_same_guest(open(&raw).as_ref(), open(&out).as_ref(), &what);
                let report = kiln_disk::check::check_file(&out, None).unwrap();
                assert!(
                    report.errors.is_empty() && report.leaks.is_empty(),
                    "{what}: {report:?}"
                );
            }
        }
    }
}

#[test]
fn compressed_output_is_smaller_and_counted_as_compressed() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 6, SIZE);
    let plain = dir.path().join("plain.qcow2");
    let packed = dir.path().join("packed.qcow2");
    kiln_convert(&raw, &plain, &CreateOptions::new(Format::Qcow2));
    let mut o = CreateOptions::new(Format::Qcow2);
    o.compress = true;
    o.apply("compression_type=zstd").unwrap();
    kiln_convert(&raw, &packed, &o);
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        len(&packed) < len(&plain),
        "{} !< {}",
        len(&packed),
        len(&plain)
    );
    let info = qemu_img_ok(&["info", "--output=json", packed.to_str().unwrap()]);
    assert!(info.contains("\"compression-type\": \"zstd\""), "{info}");
    let check = qemu_img_ok(&["check", packed.to_str().unwrap()]);
    assert!(
        check.contains("compressed clusters") && !check.contains(" 0.00% compressed"),
        "{check}"
    );
}

#[test]
fn check_finds_refcount_damage_as_qemu_img_does() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 7, SIZE);
    let out = dir.path().join("damaged.qcow2");
    kiln_convert(&raw, &out, &CreateOptions::new(Format::Qcow2));
    let info = qemu_img_ok(&["info", "--output=json", out.to_str().unwrap()]);
    assert!(info.contains("\"format\": \"qcow2\""));
    // Zero the first refcount block: every used cluster now has refcount 0.
    let header = std::fs::read(&out).unwrap();
    let reftable = u64::from_be_bytes(header[48..56].try_into().unwrap());
    let block = {
        let f = std::fs::read(&out).unwrap();
        u64::from_be_bytes(
            f[reftable as usize..reftable as usize + 8]
                .try_into()
                .unwrap(),
        )
    };
    poke(&out, block, &vec![0u8; 65536]);
    let report = kiln_disk::check::check_file(&out, None).unwrap();
    assert!(
        !report.errors.is_empty(),
        "kiln check missed zeroed refcounts"
    );
    let qemu = qemu_img(&["check", out.to_str().unwrap()]);
    assert_eq!(
        qemu.status.code(),
        Some(2),
        "qemu-img agrees the image is corrupt"
    );
}

#[test]
fn resize_grows_in_place_and_relocates_the_l1_table() {
    let dir = TempDir::new().unwrap();
    let raw = sparse_source(&dir, 8, SIZE);
    for (name, new_size) in [("small", SIZE + (1 << 20)), ("large", 300 << 30)] {
        let out = dir.path().join(format!("{name}.qcow2"));
        let mut o = CreateOptions::new(Format::Qcow2);
        o.apply("cluster_size=4k").unwrap(); // 4 KiB clusters: one L1 cluster maps only 1 GiB
        kiln_convert(&raw, &out, &o);
        kiln_disk::resize::resize(&out, Format::Qcow2, new_size, false).unwrap();
        let check = qemu_img(&["check", out.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let info = qemu_img_ok(&["info", "--output=json", out.to_str().unwrap()]);
        assert!(
            info.contains(&format!("\"virtual-size\": {new_size}")),
            "{info}"
        );
        let grown = open(&out);
        let mut head = vec![0u8; SIZE as usize];
        let mut want = vec![0u8; SIZE as usize];
        grown.read_at(&mut head, 0).unwrap();
        open(&raw).read_at(&mut want, 0).unwrap();
        assert!(head == want, "{name}: contents changed by resize");
        let mut tail = vec![1u8; 4096];
        grown.read_at(&mut tail, new_size - 4096).unwrap();
        assert!(tail.iter().all(|&b| b == 0));
    }
}

#[test]
fn unsafe_qcow2_images_are_refused_with_a_reason() {
    let dir = TempDir::new().unwrap();
    let data_file = dir.path().join("ext.qcow2");
    let data_opt = format!("data_file={}", dir.path().join("ext.raw").display());
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        &data_opt,
        data_file.to_str().unwrap(),
        "16M",
    ]);
    let report = kiln_disk::inspect::inspect_file(&data_file).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("external data file")),
        "{report:?}"
    );

    let raw = sparse_source(&dir, 9, SIZE);
    let out = dir.path().join("bad-l1.qcow2");
    kiln_convert(&raw, &out, &CreateOptions::new(Format::Qcow2));
    let bytes = std::fs::read(&out).unwrap();
    let l1 = u64::from_be_bytes(bytes[40..48].try_into().unwrap());
    poke(&out, l1, &(1u64 << 50).to_be_bytes()); // an L2 table far past the end
    let report = kiln_disk::inspect::inspect_file(&out).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("outside the file")),
        "{report:?}"
    );

    // An L2 table placed over the L1 table itself.
    poke(&out, l1, &(l1 | 1 << 63).to_be_bytes());
    let report = kiln_disk::inspect::inspect_file(&out).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("overlaps the L1 table")),
        "{report:?}"
    );
}

#[test]
fn a_qcow2_header_inside_a_gpt_disk_is_refused() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("confused.qcow2");
    qemu_img_ok(&["create", "-f", "qcow2", out.to_str().unwrap(), "16M"]);
    poke(&out, 512, b"EFI PART");
    let report = kiln_disk::inspect::inspect_file(&out).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("two formats")),
        "{report:?}"
    );
}

/// Images kiln and qemu-img wrote, as the starting points for mutation.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let raw = dir.path().join("seed.raw");
        make_sparse_raw(&raw, 3 << 20, 10);
        let mut o = CreateOptions::new(Format::Qcow2);
        o.apply("cluster_size=4k").unwrap();
        let kiln = dir.path().join("k.qcow2");
        kiln_convert(&raw, &kiln, &o);
        let packed = dir.path().join("c.qcow2");
        qemu_img_ok(&[
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4k",
            raw.to_str().unwrap(),
            packed.to_str().unwrap(),
        ]);
        let ext = dir.path().join("e.qcow2");
        qemu_img_ok(&[
            "convert",
            "-O",
            "qcow2",
            "-o",
            "extended_l2=on,cluster_size=16k",
            raw.to_str().unwrap(),
            ext.to_str().unwrap(),
        ]);
        qemu_img_ok(&["snapshot", "-c", "s", ext.to_str().unwrap()]);
        [kiln, packed, ext]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Damaged headers, tables and data never panic any parser, and nothing
    /// allocates beyond what the file can back.
    #[test]
    fn mutated_qcow2s_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..16),
        cut in proptest::option::of(any::<u32>()),
    ) {
        let mut bytes = seeds()[which].clone();
        for (at, value) in edits {
            // Most edits land in the first clusters, where the metadata is.
            let at = if at % 4 == 0 { at as usize % bytes.len() } else { at as usize % 16384 };
            bytes[at] = value;
        }
        let parsers = Parsers {
            format: Format::Qcow2,
            inspect_structure: qcow2::inspect_structure,
            check: |f| qcow2::check(f).map(|r| r.errors),
        };
        survive(&parsers, bytes, cut);
    }

    /// Random sparse content survives kiln's writer and reader in every
    /// layout: cluster sizes, versions, compression.
    #[test]
    fn random_sparse_content_round_trips(
        seed in any::<u64>(),
        sectors in 1u64..12_000,
        cluster_bits in 9u32..=21,
        v2 in any::<bool>(),
        compress in any::<bool>(),
        zstd in any::<bool>(),
    ) {
        let dir = TempDir::new().unwrap();
        let raw = dir.path().join("src.raw");
        make_sparse_raw(&raw, sectors * 512, seed);
        let mut o = CreateOptions::new(Format::Qcow2);
        o.cluster_size = 1 << cluster_bits;
        o.qcow2_v2 = v2;
        o.compress = compress;
        if zstd && !v2 {
            o.apply("compression_type=zstd").unwrap();
        }
        let out = dir.path().join("rt.qcow2");
        kiln_convert(&raw, &out, &o);
        assert_same_guest(open(&raw).as_ref(), open(&out).as_ref(), "round trip");
        let report = qcow2::check(&std::fs::File::open(&out).unwrap()).unwrap();
        prop_assert!(report.errors.is_empty() && report.leaks.is_empty(), "{:?}", report);
    }
}

/// Long data runs reach the qcow2 writer whole: they are written straight
/// from the read buffer and split where one L2 table's reach ends.
#[test]
fn long_data_runs_cross_l2_tables_intact() {
    let dir = TempDir::new().unwrap();
    let raw = dir.path().join("runs.raw");
    let file = std::fs::File::create(&raw).unwrap();
    // 9 MiB of data from 1 MiB + 512 on, a hole, then data up to a short end.
    let size = (16 << 20) + 1536;
    file.set_len(size).unwrap();
    let mut rng = common::Rng::new(11);
    let mut data = vec![0u8; 9 << 20];
    rng.fill(&mut data);
    std::os::unix::fs::FileExt::write_all_at(&file, &data, (1 << 20) + 512).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &data[..3 << 20], size - (3 << 20)).unwrap();
    drop(file);
    for cluster in ["512", "4k", "64k", "2M"] {
        let mut o = CreateOptions::new(Format::Qcow2);
        o.apply(&format!("cluster_size={cluster}")).unwrap();
        let out = dir.path().join(format!("runs-{cluster}.qcow2"));
        kiln_convert(&raw, &out, &o);
        let (out, raw) = (out.to_str().unwrap(), raw.to_str().unwrap());
        qemu_img_ok(&["check", out]);
        qemu_img_ok(&["compare", raw, out]);
    }
}
