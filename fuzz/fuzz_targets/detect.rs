#![no_main]

// The format is detected from the content, as for any upload.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_fuzz::exercise(data, None));
