//! Bytes from disk or the wire: a snapshot image or a proposal must decode
//! or be refused, never panic; what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::{codec, Proposal, State};

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = State::decode(data) {
        let again = state.encode().expect("a decoded state encodes");
        assert_eq!(State::decode(&again).expect("re-decodes"), state);
    }
    if let Ok(proposal) = codec::decode::<Proposal>(data) {
        let mut state = State::default();
        let _ = state.apply(&proposal);
    }
});
