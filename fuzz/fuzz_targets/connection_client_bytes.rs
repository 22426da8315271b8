//! A client `Connection` fed arbitrary bytes (config from the first bytes, see
//! `wsduplex_fuzz::config`), echoing what it receives: whole and in pieces, with the same
//! outcome both ways and every `Harness` check after every call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::Role;

fuzz_target!(|data: &[u8]| wsduplex_fuzz::run_bytes(Role::Client, data));
