//! SHA-256 in one place: every digest ferry computes (downloads, unpacked files,
//! `--artifact`, drift checks) goes through ring's SHA-256, the assembly OpenSSL uses (sha2
//! held a download at 0.71x `curl | openssl dgst`), and is written in lowercase hex (the
//! `hex` crate).

use std::io::Read;
use std::path::Path;

/// SHA-256 as bytes stream in.
pub struct Hasher(ring::digest::Context);

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest in lowercase hex; the hasher starts over.
    pub fn finish_hex(&mut self) -> String {
        let done = std::mem::take(self);
        hex::encode(done.0.finish())
    }
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// The SHA-256 of the regular file at `path`, read as it streams, in hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = crate::files::open_regular(path)?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher.finish_hex());
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b""), EMPTY);
        let mut hasher = Hasher::new();
        hasher.update(b"fo");
        hasher.update(b"o");
        assert_eq!(
            hasher.finish_hex(),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
        assert_eq!(hasher.finish_hex(), EMPTY, "it starts over");
    }
}
