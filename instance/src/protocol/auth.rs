//! canal's password scramble ("MySQL 4.1 style"): the password never crosses the wire, only a proof that depends on a
//! per-connection random seed.

use sha1::{Digest, Sha1};

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// canal's password digest, as `canal.passwd` stores it: `SHA1(SHA1(plaintext))`.
pub fn double_sha1(plain: &[u8]) -> [u8; 20] {
    sha1(&[&sha1(&[plain])])
}

/// Client side: the lowercase hex token a client sends for `password` and the server's `seed`.
pub fn scramble(password: &str, seed: &[u8]) -> String {
    if password.is_empty() {
        return String::new();
    }
    let stage1 = sha1(&[password.as_bytes()]);
    let stage2 = sha1(&[&stage1]);
    hex::encode(xor(&sha1(&[seed, &stage2]), &stage1))
}

/// Server side: whether `token_hex` proves knowledge of the password whose `SHA1(SHA1(password))` is `stored`.
pub fn verify(stored: &[u8; 20], seed: &[u8], token_hex: &[u8]) -> bool {
    let Ok(token) = hex::decode(token_hex) else {
        return false;
    };
    if token.len() != 20 {
        return false;
    }
    let candidate = xor(&token, &sha1(&[seed, stored]));
    sha1(&[&candidate]) == *stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrambled_password_verifies_only_with_the_same_seed_and_password() {
        let stored = double_sha1(b"canal");
        let seed = [1, 2, 3, 4, 5, 6, 7, 8];
        let token = scramble("canal", &seed);
        assert_eq!(token.len(), 40);
        assert!(verify(&stored, &seed, token.as_bytes()));
        assert!(!verify(&stored, &[0; 8], token.as_bytes()));
        assert!(!verify(&stored, &seed, scramble("wrong", &seed).as_bytes()));
        assert!(!verify(&stored, &seed, b"not hex"));
    }
}
