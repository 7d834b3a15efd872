//! A backup file from an operator (`POST /admin/v1/cluster/snapshot`): it
//! must be read or refused, never panic; and whatever body decodes, even
//! without a valid checksum around it, restores or is refused by `apply`
//! without changing the state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::backup::Backup;
use sluice_core::{codec, Command, Proposal, State};

fuzz_target!(|data: &[u8]| {
    if let Ok(backup) = Backup::from_bytes(data) {
        let again = backup.to_bytes().expect("a read backup writes");
        assert_eq!(Backup::from_bytes(&again).expect("re-reads"), backup);
    }
    if let Ok(backup) = codec::decode::<Backup>(data) {
        let mut state = State::default();
        let proposal = Proposal {
            at_ms: 1,
            command: Command::RestoreConfig {
                config: Box::new(backup.config.clone()),
                force: false,
            },
        };
        match state.apply(&proposal) {
            Ok(_) => assert_eq!(state.config_counts(), backup.config.counts()),
            Err(_) => assert_eq!(state, State::default()),
        }
    }
});
