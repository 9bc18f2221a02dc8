#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_fuzz::exercise(data, Some(kiln_disk::Format::Vhd)));
