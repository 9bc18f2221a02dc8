//! Identifiers derived from a seed: the same template gives the same disk
//! and filesystem identifiers, so builds are reproducible.

use sha2::{Digest, Sha256};

/// A version 4 style UUID (random bits from the hash) for `purpose`.
pub fn derive(seed: &[u8], purpose: &str) -> [u8; 16] {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update([0]);
    hash.update(purpose.as_bytes());
    let digest = hash.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case.
pub fn to_string(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Parses the text form.
pub fn parse(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// GPT stores the first three fields little-endian ("mixed-endian" GUIDs).
pub fn to_gpt_bytes(id: &[u8; 16]) -> [u8; 16] {
    let mut out = *id;
    out[0..4].reverse();
    out[4..6].reverse();
    out[6..8].reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_gpt_order() {
        let id = parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap();
        assert_eq!(to_string(&id), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(
            to_gpt_bytes(&id),
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert!(parse("c12a7328f81f11d2ba4b00a0c93ec93b").is_none());
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = derive(b"seed", "root");
        assert_eq!(a, derive(b"seed", "root"));
        assert_ne!(a, derive(b"seed", "esp"));
        assert_eq!(to_string(&a).as_bytes()[14], b'4');
    }
}
