//! Checkpoints as C2SP signed notes (c2sp.org/tlog-checkpoint, c2sp.org/signed-note).
//!
//! ```text
//! <origin>\n<tree size, decimal>\n<root hash, base64>\n
//! \n
//! — <key name> base64(key ID[4] ‖ Ed25519 signature[64])\n
//! ```
//! The signature is over the note text (the three lines, with their newlines). The key name
//! is the origin; key ID = SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)[:4].
use crate::leaf::Hash;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

/// What a checkpoint says: the log, its size, its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
}

impl Checkpoint {
    /// The note text (what is signed).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            STANDARD.encode(self.root_hash)
        )
    }
}

/// A checkpoint with its signature, as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The signature line's base64 (key ID ‖ signature).
    pub signature: String,
    /// The whole signed note.
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("not a signed note: {0}")]
    Format(&'static str),
    #[error("the note has no signature by {0}")]
    NoSignature(String),
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
    #[error("not a checkpoint: {0}")]
    Checkpoint(&'static str),
}

/// The log's signer: an Ed25519 key and the key name (= the checkpoints' origin).
#[derive(Clone)]
pub struct Notary {
    key: SigningKey,
    name: String,
}

impl std::fmt::Debug for Notary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Notary({}, ***)", self.name)
    }
}

/// A key name must be non-empty and hold no whitespace and no `+` (signed-note).
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

impl Notary {
    /// From the 32-byte Ed25519 seed, hex-encoded (`ZHILEGO_AUDIT_SIGNING_KEY`).
    pub fn from_hex(seed: &str, name: &str) -> Result<Notary, String> {
        let bytes =
            hex::decode(seed.trim()).map_err(|_| "must be 64 hex characters".to_string())?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 64 hex characters (a 32-byte Ed25519 seed)".to_string())?;
        if !valid_key_name(name) {
            return Err(format!(
                "the origin {name:?} is not a valid key name (no spaces, no '+')"
            ));
        }
        Ok(Notary {
            key: SigningKey::from_bytes(&seed),
            name: name.to_string(),
        })
    }

    /// A fresh random seed, hex-encoded.
    pub fn generate_hex() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    pub fn origin(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            key: self.key.verifying_key(),
            name: self.name.clone(),
        }
    }

    /// Signs a checkpoint of the tree.
    pub fn sign(&self, tree_size: u64, root_hash: Hash) -> SignedCheckpoint {
        let checkpoint = Checkpoint {
            origin: self.name.clone(),
            tree_size,
            root_hash,
        };
        let body = checkpoint.body();
        let sig = self.key.sign(body.as_bytes());
        let mut raw = key_id(&self.name, &self.key.verifying_key()).to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        let signature = STANDARD.encode(raw);
        let text = format!("{body}\n\u{2014} {} {signature}\n", self.name);
        SignedCheckpoint {
            checkpoint,
            signature,
            text,
        }
    }
}

/// key ID = SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)[:4].
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Checks notes signed by one known key.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    key: VerifyingKey,
    name: String,
}

impl NoteVerifier {
    pub fn new(name: &str, public_key: &[u8]) -> Result<NoteVerifier, String> {
        let bytes: [u8; 32] = public_key
            .try_into()
            .map_err(|_| "an Ed25519 public key is 32 bytes".to_string())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| format!("public key: {e}"))?;
        Ok(NoteVerifier {
            key,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The signed-note verifier key: `<name>+<hex key ID>+<base64(0x01 ‖ public key)>`.
    pub fn vkey(&self) -> String {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, &self.key)),
            STANDARD.encode(raw)
        )
    }

    /// Opens a signed checkpoint: the signature of this key must verify, and the text must be
    /// a checkpoint whose origin is the key name.
    pub fn open(&self, text: &str) -> Result<SignedCheckpoint, NoteError> {
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Format("control characters other than newline"));
        }
        let split = text
            .rfind("\n\n")
            .ok_or(NoteError::Format("no blank line before the signatures"))?;
        let body = &text[..split + 1];
        let signatures = &text[split + 2..];
        if !signatures.ends_with('\n') {
            return Err(NoteError::Format(
                "the last signature line does not end in a newline",
            ));
        }
        let id = key_id(&self.name, &self.key);
        let mut mine = None;
        for line in signatures.lines() {
            let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Format(
                "a signature line does not start with an em dash",
            ))?;
            let (name, sig) = rest
                .split_once(' ')
                .ok_or(NoteError::Format("a signature line has no signature"))?;
            let raw = STANDARD
                .decode(sig)
                .map_err(|_| NoteError::Format("a signature is not base64"))?;
            if name == self.name && raw.len() == 68 && raw[..4] == id {
                mine = Some(raw);
            }
        }
        let raw = mine.ok_or_else(|| NoteError::NoSignature(self.name.clone()))?;
        let sig = ed25519_dalek::Signature::from_slice(&raw[4..])
            .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
        self.key
            .verify(body.as_bytes(), &sig)
            .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
        let checkpoint = parse_checkpoint(body)?;
        if checkpoint.origin != self.name {
            return Err(NoteError::Checkpoint("the origin is not the key's name"));
        }
        Ok(SignedCheckpoint {
            checkpoint,
            signature: STANDARD.encode(&raw),
            text: text.to_string(),
        })
    }
}

/// Reads the checkpoint lines of a note text (extension lines after the third are allowed).
pub fn parse_checkpoint(body: &str) -> Result<Checkpoint, NoteError> {
    let mut lines = body.split('\n');
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or(NoteError::Checkpoint("no origin"))?;
    let size = lines.next().ok_or(NoteError::Checkpoint("no tree size"))?;
    if size.is_empty()
        || !size.bytes().all(|b| b.is_ascii_digit())
        || (size.len() > 1 && size.starts_with('0'))
    {
        return Err(NoteError::Checkpoint(
            "the tree size is not a decimal number",
        ));
    }
    let tree_size = size
        .parse()
        .map_err(|_| NoteError::Checkpoint("the tree size is too large"))?;
    let root = lines.next().ok_or(NoteError::Checkpoint("no root hash"))?;
    let root_hash: Hash = STANDARD
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or(NoteError::Checkpoint(
            "the root hash is not 32 bytes of base64",
        ))?;
    Ok(Checkpoint {
        origin: origin.to_string(),
        tree_size,
        root_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notary() -> Notary {
        Notary::from_hex(&"11".repeat(32), "zhilego.test/audit").unwrap()
    }

    #[test]
    fn a_signed_checkpoint_has_the_c2sp_shape_and_opens() {
        let n = notary();
        let signed = n.sign(42, [7u8; 32]);
        let lines: Vec<&str> = signed.text.split('\n').collect();
        assert_eq!(lines[0], "zhilego.test/audit");
        assert_eq!(lines[1], "42");
        assert_eq!(lines[2], STANDARD.encode([7u8; 32]));
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} zhilego.test/audit "));
        assert_eq!(lines[5], "");
        let raw = STANDARD
            .decode(lines[4].rsplit(' ').next().unwrap())
            .unwrap();
        assert_eq!(raw.len(), 68);
        assert_eq!(
            raw[..4],
            key_id("zhilego.test/audit", &n.key.verifying_key())
        );
        let opened = n.verifier().open(&signed.text).unwrap();
        assert_eq!(opened.checkpoint, signed.checkpoint);
    }

    #[test]
    fn changed_notes_and_other_keys_are_refused() {
        let n = notary();
        let signed = n.sign(42, [7u8; 32]);
        let forged = signed.text.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            n.verifier().open(&forged),
            Err(NoteError::BadSignature("zhilego.test/audit".into()))
        );
        let other = Notary::from_hex(&"22".repeat(32), "zhilego.test/audit").unwrap();
        assert!(matches!(
            other.verifier().open(&signed.text),
            Err(NoteError::NoSignature(_))
        ));
        assert!(n.verifier().open("no blank line").is_err());
        assert!(Notary::from_hex(&"11".repeat(32), "has space").is_err());
        assert!(Notary::from_hex("abcd", "zhilego.test/audit").is_err());
    }

    #[test]
    fn the_vkey_names_the_key() {
        let v = notary().verifier();
        let vkey = v.vkey();
        let parts: Vec<&str> = vkey.split('+').collect();
        assert_eq!(parts[0], "zhilego.test/audit");
        assert_eq!(parts[1].len(), 8);
        assert_eq!(STANDARD.decode(parts[2]).unwrap()[0], 1);
    }
}
