//! `kiln img` end to end: the binary against qemu-img as the oracle.

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::cargo_bin_cmd;
use tempfile::TempDir;

fn kiln() -> assert_cmd::Command {
    cargo_bin_cmd!("kiln")
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img must be installed (scripts/setup)")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A 64 MiB sparse raw disk with text, a random block and holes.
fn sample_raw(dir: &TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::FileExt;
    let path = dir.path().join("disk.raw");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    f.write_all_at(b"hello from kiln\n", 0).unwrap();
    let mut x = 0x9e37_79b9_u32;
    let noise: Vec<u8> = (0..(3 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    f.write_all_at(&noise, 10 << 20).unwrap();
    f.write_all_at(&vec![b'k'; 1 << 20], 40 << 20).unwrap();
    path
}

#[test]
fn convert_then_compare_info_check_and_inspect() {
    let dir = TempDir::new().unwrap();
    let raw = sample_raw(&dir);
    let qcow = dir.path().join("disk.qcow2");
    kiln()
        .args([
            "img",
            "convert",
            "-O",
            "qcow2",
            "-c",
            "-o",
            "compression_type=zstd",
            p(&raw),
            p(&qcow),
        ])
        .assert()
        .success();
    assert!(qemu_img(&["check", p(&qcow)]).status.success());
    assert!(qemu_img(&["compare", p(&raw), p(&qcow)]).status.success());

    let info = kiln()
        .args(["img", "info", "--json", p(&qcow)])
        .assert()
        .success();
    let info: serde_json::Value = serde_json::from_slice(&info.get_output().stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual_size"], 64 << 20);
    assert_eq!(info["compression"], "zstd");
    assert!(
        info["actual_size"].as_u64().unwrap() < 4 << 20,
        "compressed and sparse: {info}"
    );

    kiln()
        .args(["img", "check", p(&qcow)])
        .assert()
        .success()
        .stdout(predicates::str::contains("No errors"));
    kiln()
        .args(["img", "inspect", "--safety", p(&qcow)])
        .assert()
        .success();
    kiln()
        .args(["img", "compare", p(&raw), p(&qcow)])
        .assert()
        .code(0);

    // One byte changed in the guest: compare says so with exit 1.
    let changed = dir.path().join("changed.raw");
    std::fs::copy(&raw, &changed).unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new()
            .write(true)
            .open(&changed)
            .unwrap(),
        b"X",
        12345,
    )
    .unwrap();
    kiln()
        .args(["img", "compare", p(&changed), p(&qcow)])
        .assert()
        .code(1)
        .stdout(predicates::str::contains("offset 12345"));
}

#[test]
fn every_output_format_is_accepted_by_qemu_img() {
    let dir = TempDir::new().unwrap();
    let raw = sample_raw(&dir);
    for (fmt, opts, qemu_fmt) in [
        ("raw", "", "raw"),
        ("qcow2", "compat=0.10", "qcow2"),
        ("vmdk", "", "vmdk"),
        ("vpc", "subformat=fixed,force_size=on", "vpc"),
        ("vhd", "subformat=dynamic", "vpc"),
    ] {
        let out = dir.path().join(format!("out-{fmt}.img"));
        let mut args = vec!["img", "convert", "-O", fmt];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        args.extend([p(&raw), p(&out)]);
        kiln().args(&args).assert().success();
        let cmp = qemu_img(&["compare", "-f", "raw", "-F", qemu_fmt, p(&raw), p(&out)]);
        assert!(
            cmp.status.success(),
            "{fmt}: {}",
            String::from_utf8_lossy(&cmp.stdout)
        );
        // Detection by content: the name says nothing.
        let info = kiln()
            .args(["img", "info", "--json", p(&out)])
            .assert()
            .success();
        let info: serde_json::Value = serde_json::from_slice(&info.get_output().stdout).unwrap();
        assert_eq!(
            info["format"],
            if qemu_fmt == "vpc" { "vhd" } else { qemu_fmt },
            "{fmt}"
        );
    }
}

#[test]
fn check_exit_codes_follow_qemu_img() {
    let dir = TempDir::new().unwrap();
    let raw = sample_raw(&dir);
    let qcow = dir.path().join("disk.qcow2");
    kiln()
        .args(["img", "convert", "-O", "qcow2", p(&raw), p(&qcow)])
        .assert()
        .success();
    let bytes = std::fs::read(&qcow).unwrap();
    let reftable = u64::from_be_bytes(bytes[48..56].try_into().unwrap()) as usize;
    let block = u64::from_be_bytes(bytes[reftable..reftable + 8].try_into().unwrap());
    let file = std::fs::OpenOptions::new().write(true).open(&qcow).unwrap();
    // Refcount of cluster 0 (the header) raised to 2: a leak, exit 3.
    std::os::unix::fs::FileExt::write_all_at(&file, &2u16.to_be_bytes(), block).unwrap();
    kiln()
        .args(["img", "check", p(&qcow)])
        .assert()
        .code(3)
        .stdout(predicates::str::contains("Leaked cluster 0"));
    assert_eq!(qemu_img(&["check", p(&qcow)]).status.code(), Some(3));
    // Refcount 0 for a used cluster: corruption, exit 2.
    std::os::unix::fs::FileExt::write_all_at(&file, &0u16.to_be_bytes(), block).unwrap();
    kiln()
        .args(["img", "check", p(&qcow)])
        .assert()
        .code(2)
        .stdout(predicates::str::contains("ERROR cluster 0"));
    assert_eq!(qemu_img(&["check", p(&qcow)]).status.code(), Some(2));
}

#[test]
fn create_and_resize_agree_with_qemu_img() {
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("new.qcow2");
    kiln()
        .args([
            "img",
            "create",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4k",
            p(&img),
            "10G",
        ])
        .assert()
        .success();
    let info = String::from_utf8(qemu_img(&["info", "--output=json", p(&img)]).stdout).unwrap();
    assert!(info.contains("\"virtual-size\": 10737418240"), "{info}");
    assert!(qemu_img(&["check", p(&img)]).status.success());
    kiln()
        .args(["img", "resize", p(&img), "+2T"])
        .assert()
        .success();
    let info = String::from_utf8(qemu_img(&["info", "--output=json", p(&img)]).stdout).unwrap();
    assert!(
        info.contains(&format!(
            "\"virtual-size\": {}",
            (10u64 << 30) + (2u64 << 40)
        )),
        "{info}"
    );
    assert!(qemu_img(&["check", p(&img)]).status.success());

    let raw = dir.path().join("new.raw");
    kiln()
        .args(["img", "create", p(&raw), "1M"])
        .assert()
        .success();
    kiln()
        .args(["img", "resize", p(&raw), "512k"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--shrink"));
    kiln()
        .args(["img", "resize", "--shrink", p(&raw), "512k"])
        .assert()
        .success();
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 512 << 10);
}

#[test]
fn unsafe_images_are_refused_and_a_failed_convert_leaves_nothing() {
    let dir = TempDir::new().unwrap();
    let raw = sample_raw(&dir);
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    kiln()
        .args(["img", "convert", "-O", "qcow2", p(&raw), p(&base)])
        .assert()
        .success();
    assert!(
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-b",
            p(&base),
            "-F",
            "qcow2",
            p(&top)
        ])
        .status
        .success()
    );
    kiln()
        .args(["img", "inspect", "--safety", p(&top)])
        .assert()
        .code(1)
        .stdout(predicates::str::contains("backing file"));
    let json = kiln()
        .args(["img", "inspect", "--json", p(&top)])
        .assert()
        .code(1);
    let report: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert!(!report["problems"].as_array().unwrap().is_empty());

    let out = dir.path().join("out.raw");
    kiln()
        .args(["img", "convert", "-O", "raw", p(&top), p(&out)])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("external"));
    assert!(!out.exists());
    kiln()
        .args([
            "img",
            "convert",
            "--allow-external",
            "-O",
            "raw",
            p(&top),
            p(&out),
        ])
        .assert()
        .success();
    assert!(qemu_img(&["compare", p(&raw), p(&out)]).status.success());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn completions_and_man_pages_are_generated() {
    let out = kiln().args(["completions", "bash"]).assert().success();
    assert!(
        String::from_utf8_lossy(&out.get_output().stdout)
            .contains("kiln__subcmd__img__subcmd__convert")
    );
    let dir = TempDir::new().unwrap();
    kiln().args(["manpages", p(dir.path())]).assert().success();
    let page = std::fs::read_to_string(dir.path().join("kiln-img-convert.1")).unwrap();
    assert!(page.contains(".TH"), "{page}");
}
