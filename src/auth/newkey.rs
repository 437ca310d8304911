//! `sagegate keys new --id ID --plan PLAN`: a fresh random key and the keys-file entry to paste.
//!
//! Input: the key id and usage plan id. Output: a [`NewKey`]: the value, shown to the operator
//! once, and a YAML entry holding only its SHA-256, so the file under version control never
//! holds the key.
//!
//! Security: 40 characters from `[A-Za-z0-9]` (uniform, by rejection sampling) drawn from rand's
//! thread RNG, a CSPRNG seeded from the operating system: about 238 bits of entropy.

use std::fmt;

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// Length of a generated key (API Gateway accepts 20–128).
const NEW_KEY_LEN: usize = 40;

/// A freshly generated key.
pub struct NewKey {
    /// The key value, for the client's `x-api-key` header. Print once; it is stored nowhere.
    pub value: String,
    /// The entry to paste under `keys:` in the keys file (two-space indented list item).
    pub entry_yaml: String,
}

// The value must not reach a log through `{:?}`.
impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("value", &"<redacted>")
            .field("entry_yaml", &self.entry_yaml)
            .finish()
    }
}

/// Generates a key for key id `id` in usage plan `plan`.
pub fn new_key(id: &str, plan: &str) -> NewKey {
    let value = new_value();
    let hash = hex::encode(Sha256::digest(value.as_bytes()));
    // The same entry `keys new --keys SOURCE` appends (super::edit).
    let entry_yaml = super::edit::entry_block(2, 4, (id, id, plan, &hash));
    NewKey { value, entry_yaml }
}

/// A fresh random key value (see the module's security note).
pub fn new_value() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(NEW_KEY_LEN)
        .map(char::from)
        .collect()
}
