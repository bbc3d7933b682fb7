#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::jwk_document(data));
