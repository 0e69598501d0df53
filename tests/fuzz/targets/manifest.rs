//! `manifest`: a group's manifest file (`live/manifest`, and the first file of every snapshot).

use std::path::Path;

use dovetail::state_machine::Manifest;

/// Decodes a manifest; one that decodes survives a round trip (bincode accepts some encodings
/// it would not write, such as map keys out of order, so the bytes may differ), and its session
/// table and mailbox names answer lookups.
pub fn manifest(data: &[u8]) {
    let Ok(manifest) = Manifest::decode(Path::new("manifest"), data) else {
        return;
    };
    let again = Manifest::decode(Path::new("manifest"), &manifest.encode()).expect("a manifest re-encodes");
    assert_eq!(again, manifest, "a decoded manifest survives a round trip");
    for (client_id, session) in manifest.sessions.iter() {
        let _ = manifest.sessions.check(client_id, session.request_seq);
    }
    for (user, mailboxes) in &manifest.users {
        for name in mailboxes.keys() {
            let _ = manifest.mailbox(user, name);
        }
    }
}
