#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::dpop_proof(data));
