//! Password hashes of Dovecot's schemes: parsing a stored `{SCHEME}hash` (at load, so a malformed
//! hash is found when the file is read, not at a login), checking a password against it, and
//! making new hashes (`dovetail user hash`, and the table's dummy hash).
//!
//! Every comparison of a computed hash with the stored one is constant-time (`subtle`, inside the
//! crates for ARGON2ID and BLF-CRYPT, here for SHA512-CRYPT).

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use subtle::ConstantTimeEq;

/// A password scheme of Dovecot's passwd-file that Dovetail can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scheme {
    /// `{ARGON2ID}$argon2id$v=19$m=..,t=..,p=..$salt$hash` (PHC string).
    Argon2id,
    /// `{SHA512-CRYPT}$6$[rounds=N$]salt$hash` (crypt(3), Drepper's SHA-crypt).
    Sha512Crypt,
    /// `{BLF-CRYPT}$2y$NN$salthash` (bcrypt; `$2a$`, `$2b$`, `$2x$` read too).
    BlfCrypt,
}

impl Scheme {
    /// The scheme of a `{NAME}` prefix; names are case-insensitive, as in Dovecot.
    pub fn from_name(name: &str) -> Option<Scheme> {
        [Scheme::Argon2id, Scheme::Sha512Crypt, Scheme::BlfCrypt]
            .into_iter()
            .find(|scheme| scheme.name().eq_ignore_ascii_case(name))
    }

    /// The name inside the braces, as Dovecot writes it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
        }
    }
}

/// What a hash costs to check: the scheme and its work parameters. Two hashes of one `Cost` take
/// the same time to check (to within the output length), whatever their salts and passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cost {
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        version: u32,
    },
    Sha512Crypt {
        rounds: usize,
    },
    BlfCrypt {
        cost: u32,
    },
}

/// SHA-crypt's rounds when a hash names none (`$6$salt$hash`).
const SHA512_ROUNDS_IMPLICIT: usize = 5_000;

impl Cost {
    /// What `dovetail user hash` uses: about 0.1 to 0.3 s per check on one core of a 2020s server.
    /// ARGON2ID as `doveadm pw` makes it (64 MiB, 3 passes, 1 lane); SHA512-CRYPT at 100,000
    /// rounds (Dovecot's 5,000 is too cheap today); BLF-CRYPT at cost 12 (Dovecot's 5 likewise).
    pub fn default_for(scheme: Scheme) -> Cost {
        match scheme {
            Scheme::Argon2id => Cost::Argon2id {
                memory_kib: 65_536,
                iterations: 3,
                parallelism: 1,
                version: 0x13,
            },
            Scheme::Sha512Crypt => Cost::Sha512Crypt { rounds: 100_000 },
            Scheme::BlfCrypt => Cost::BlfCrypt { cost: 12 },
        }
    }

    pub fn scheme(self) -> Scheme {
        match self {
            Cost::Argon2id { .. } => Scheme::Argon2id,
            Cost::Sha512Crypt { .. } => Scheme::Sha512Crypt,
            Cost::BlfCrypt { .. } => Scheme::BlfCrypt,
        }
    }
}

/// A stored password hash, checked well-formed when parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredHash {
    /// The text after `{SCHEME}`.
    encoded: String,
    cost: Cost,
    /// SHA512-CRYPT's salt and hash (the encoded text's last two fields); empty for others.
    salt: String,
    hash: String,
}

/// Never prints the hash: it stays out of logs and error messages.
impl std::fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredHash({:?})", self.cost)
    }
}

impl StoredHash {
    /// Parses the text after `{SCHEME}`; the error is a reason that never quotes the hash.
    pub fn parse(scheme: Scheme, encoded: &str) -> Result<StoredHash, &'static str> {
        let (cost, salt, hash) = match scheme {
            Scheme::Argon2id => (parse_argon2id(encoded)?, String::new(), String::new()),
            Scheme::Sha512Crypt => parse_sha512_crypt(encoded)?,
            Scheme::BlfCrypt => (parse_blf_crypt(encoded)?, String::new(), String::new()),
        };
        Ok(StoredHash {
            encoded: encoded.to_string(),
            cost,
            salt,
            hash,
        })
    }

    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// The passwd-file field: `{SCHEME}` and the hash.
    pub fn to_field(&self) -> String {
        format!("{{{}}}{}", self.cost.scheme().name(), self.encoded)
    }

    /// Whether `password` is the one hashed. Runs the scheme's whole KDF, then compares in
    /// constant time. An error (a KDF that fails on parameters parsed fine at load, e.g. memory
    /// it cannot allocate) is a reason, never the hash.
    pub fn verify(&self, password: &[u8]) -> Result<bool, &'static str> {
        #[cfg(test)]
        KDF_RUNS.with(|runs| runs.borrow_mut().push(self.cost));
        match self.cost {
            Cost::Argon2id {
                memory_kib,
                iterations,
                parallelism,
                version,
            } => {
                let parsed = PasswordHash::new(&self.encoded).map_err(|_| "unparsable PHC string")?;
                let params = Params::try_from(&parsed).map_err(|_| "bad Argon2 parameters")?;
                debug_assert_eq!(
                    (params.m_cost(), params.t_cost(), params.p_cost()),
                    (memory_kib, iterations, parallelism)
                );
                let version = Version::try_from(version).map_err(|_| "bad Argon2 version")?;
                match Argon2::new(Algorithm::Argon2id, version, params).verify_password(password, &parsed) {
                    Ok(()) => Ok(true),
                    Err(argon2::password_hash::Error::Password) => Ok(false),
                    Err(_) => Err("Argon2 failed"),
                }
            }
            Cost::Sha512Crypt { rounds } => {
                let params = sha_crypt::Sha512Params::new(rounds).map_err(|_| "rounds out of range")?;
                let computed = sha_crypt::sha512_crypt_b64(password, self.salt.as_bytes(), &params)
                    .map_err(|_| "SHA-crypt failed")?;
                Ok(computed.as_bytes().ct_eq(self.hash.as_bytes()).into())
            }
            Cost::BlfCrypt { .. } => bcrypt::verify(password, &self.encoded).map_err(|_| "bcrypt failed"),
        }
    }
}

#[cfg(test)]
thread_local! {
    /// The cost of every KDF run on this thread, in order: lets tests check which KDF a path ran
    /// without timing it.
    pub(crate) static KDF_RUNS: std::cell::RefCell<Vec<Cost>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hashes `password` at `cost` with a fresh random salt (the OS's generator).
pub fn hash_password(password: &[u8], cost: Cost) -> Result<StoredHash, &'static str> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| "no OS randomness")?;
    let encoded = match cost {
        Cost::Argon2id {
            memory_kib,
            iterations,
            parallelism,
            version,
        } => {
            let params = Params::new(memory_kib, iterations, parallelism, None)
                .map_err(|_| "bad Argon2 parameters")?;
            let version = Version::try_from(version).map_err(|_| "bad Argon2 version")?;
            let salt = SaltString::encode_b64(&salt).map_err(|_| "bad salt")?;
            argon2::password_hash::PasswordHasher::hash_password(
                &Argon2::new(Algorithm::Argon2id, version, params),
                password,
                &salt,
            )
            .map_err(|_| "Argon2 failed")?
            .to_string()
        }
        Cost::Sha512Crypt { rounds } => {
            const CRYPT_ALPHABET: &[u8; 64] =
                b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
            let salt: String = salt
                .iter()
                .map(|b| char::from(CRYPT_ALPHABET[usize::from(b % 64)]))
                .collect();
            let params = sha_crypt::Sha512Params::new(rounds).map_err(|_| "rounds out of range")?;
            let hash = sha_crypt::sha512_crypt_b64(password, salt.as_bytes(), &params)
                .map_err(|_| "SHA-crypt failed")?;
            if rounds == SHA512_ROUNDS_IMPLICIT {
                format!("$6${salt}${hash}")
            } else {
                format!("$6$rounds={rounds}${salt}${hash}")
            }
        }
        Cost::BlfCrypt { cost } => bcrypt::hash_with_salt(password, cost, salt)
            .map_err(|_| "bcrypt cost out of range (4..=31)")?
            .format_for_version(bcrypt::Version::TwoY),
    };
    StoredHash::parse(cost.scheme(), &encoded)
}

fn parse_argon2id(encoded: &str) -> Result<Cost, &'static str> {
    let parsed = PasswordHash::new(encoded).map_err(|_| "not a PHC string ($argon2id$v=..)")?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err("not an argon2id hash");
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("no salt or no hash");
    }
    let version = parsed.version.unwrap_or(0x10);
    Version::try_from(version).map_err(|_| "unknown Argon2 version")?;
    let params = Params::try_from(&parsed).map_err(|_| "bad Argon2 parameters")?;
    Ok(Cost::Argon2id {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
        version,
    })
}

/// `$6$[rounds=N$]salt$hash`: glibc's format. Rounds outside 1,000..=999,999,999 are refused
/// (glibc would clamp them: a file that relies on it is better fixed than guessed at).
fn parse_sha512_crypt(encoded: &str) -> Result<(Cost, String, String), &'static str> {
    let rest = encoded.strip_prefix("$6$").ok_or("does not start with $6$")?;
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(rest) => {
            let (rounds, rest) = rest.split_once('$').ok_or("no salt after rounds=")?;
            let rounds: usize = rounds.parse().map_err(|_| "rounds= is not a number")?;
            (rounds, rest)
        }
        None => (SHA512_ROUNDS_IMPLICIT, rest),
    };
    sha_crypt::Sha512Params::new(rounds).map_err(|_| "rounds outside 1000..=999999999")?;
    let (salt, hash) = rest.split_once('$').ok_or("no hash after the salt")?;
    if salt.len() > 16 || hash.contains('$') {
        return Err("salt longer than 16 characters, or trailing fields");
    }
    let crypt_b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    if hash.len() != 86 || !crypt_b64(hash) || !crypt_b64(salt) {
        return Err("hash is not 86 characters of crypt base64");
    }
    Ok((Cost::Sha512Crypt { rounds }, salt.to_string(), hash.to_string()))
}

/// `$2y$NN$` and 53 characters of bcrypt base64 (22 of salt, 31 of hash).
fn parse_blf_crypt(encoded: &str) -> Result<Cost, &'static str> {
    let mut fields = encoded.split('$');
    let (empty, prefix, cost, rest) = (fields.next(), fields.next(), fields.next(), fields.next());
    if empty != Some("") || fields.next().is_some() {
        return Err("not $2y$NN$salthash");
    }
    if !matches!(prefix, Some("2y" | "2b" | "2a" | "2x")) {
        return Err("not a $2y$, $2b$, $2a$ or $2x$ hash");
    }
    let cost: u32 = match cost {
        Some(c) if c.len() == 2 => c.parse().map_err(|_| "cost is not two digits")?,
        _ => return Err("cost is not two digits"),
    };
    if !(4..=31).contains(&cost) {
        return Err("cost outside 4..=31");
    }
    let rest = rest.unwrap_or("");
    if rest.len() != 53
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err("salt and hash are not 53 characters of bcrypt base64");
    }
    Ok(Cost::BlfCrypt { cost })
}

#[cfg(test)]
/// Costs low enough for debug builds; the code path is `dovetail user hash`'s.
pub(crate) fn cheap_cost(scheme: Scheme) -> Cost {
    match scheme {
        Scheme::Argon2id => Cost::Argon2id {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            version: 0x13,
        },
        Scheme::Sha512Crypt => Cost::Sha512Crypt { rounds: 1000 },
        Scheme::BlfCrypt => Cost::BlfCrypt { cost: 4 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_scheme() {
        for scheme in [Scheme::Argon2id, Scheme::Sha512Crypt, Scheme::BlfCrypt] {
            let hash = hash_password(b"correct horse", cheap_cost(scheme)).unwrap();
            let field = hash.to_field();
            assert!(field.starts_with(&format!("{{{}}}", scheme.name())), "{field}");
            let again = StoredHash::parse(scheme, &field[scheme.name().len() + 2..]).unwrap();
            assert_eq!(again, hash);
            assert_eq!(again.verify(b"correct horse"), Ok(true), "{scheme:?}");
            assert_eq!(again.verify(b"correct horsf"), Ok(false), "{scheme:?}");
            assert_eq!(again.verify(b""), Ok(false), "{scheme:?}");
        }
    }

    #[test]
    fn implicit_sha512_rounds_are_written_as_glibc_does() {
        let hash = hash_password(b"pw", Cost::Sha512Crypt { rounds: 5000 }).unwrap();
        assert!(!hash.to_field().contains("rounds="), "{:?}", hash.to_field());
        assert_eq!(hash.verify(b"pw"), Ok(true));
    }

    /// Hashes made by other tools (2026-12-05): Python 3.11's `crypt` (glibc) and `openssl
    /// passwd -6` for SHA512-CRYPT, pyca `bcrypt` 5.0.0 (`$2b$` renamed `$2y$`, as Dovecot writes
    /// it) for BLF-CRYPT, `argon2-cffi` 25.1.0 for ARGON2ID. Password: `correct horse`.
    #[test]
    fn known_vectors_from_other_tools() {
        let vectors = [
            (Scheme::Sha512Crypt, "$6$rounds=1000$IR46uAbPU6pfdTvq$rd.ewuL6Xywpi2tNOqpYHnTxtP5F0ekpOobOHWHjkYo5W.oPrwv8GxiS4TSbuSwAe.GJN1RAEw4wWDjpjzxvN/"),
            (Scheme::Sha512Crypt, "$6$LM/AVGWgiaXEqkiU$JTRtCl4Bx4oHGPPaoRdDsSDLFwxydYXX2MRuw.u718OkxWDA00K3/0gfvqf4bBjLcmZWJo6eLgfvLpOMb0gnM/"),
            (Scheme::Sha512Crypt, "$6$Zx9bQ4rT$kE.q4LZgnVdlGmCMztESKIWvypy8Vrp7lQSYYaFjjvMKKXbf0lYC4IQKJBPO1qB7rNNQ/RKAxsbqYX1DMGwQL1"),
            (Scheme::BlfCrypt, "$2y$05$dB9ilfcj1.XEL5OXhMnI3OOTqLwL4MLXdXz4Hv/yZrjmhB9LLXJBm"),
            (Scheme::Argon2id, "$argon2id$v=19$m=1024,t=2,p=1$vQqWK8lYvEw/kxtCXcNqBA$YVfui3nbjQs7eXRmDoXhB/t42Zqz/LWrsE0M0xN6nFk"),
        ];
        for (scheme, encoded) in vectors {
            let hash = StoredHash::parse(scheme, encoded).unwrap();
            assert_eq!(hash.verify(b"correct horse"), Ok(true), "{encoded}");
            assert_eq!(hash.verify(b"correct Horse"), Ok(false), "{encoded}");
        }
        let sha = StoredHash::parse(Scheme::Sha512Crypt, vectors[1].1).unwrap();
        assert_eq!(sha.cost(), Cost::Sha512Crypt { rounds: 5000 });
    }

    #[test]
    fn malformed_hashes_are_refused_with_a_reason() {
        let cases = [
            (Scheme::Argon2id, "$argon2i$v=19$m=1024,t=2,p=1$vQqWK8lYvEw/kxtCXcNqBA$YVfui3nbjQs7eXRmDoXhB/t42Zqz/LWrsE0M0xN6nFk"),
            (Scheme::Argon2id, "plain"),
            (Scheme::Sha512Crypt, "$5$salt$hash"),
            (Scheme::Sha512Crypt, "$6$rounds=10$salt$rd.ewuL6Xywpi2tNOqpYHnTxtP5F0ekpOobOHWHjkYo5W.oPrwv8GxiS4TSbuSwAe.GJN1RAEw4wWDjpjzxvN/"),
            (Scheme::Sha512Crypt, "$6$salt$short"),
            (Scheme::BlfCrypt, "$2z$05$dB9ilfcj1.XEL5OXhMnI3OOTqLwL4MLXdXz4Hv/yZrjmhB9LLXJBm"),
            (Scheme::BlfCrypt, "$2y$99$dB9ilfcj1.XEL5OXhMnI3OOTqLwL4MLXdXz4Hv/yZrjmhB9LLXJBm"),
            (Scheme::BlfCrypt, "$2y$05$tooshort"),
        ];
        for (scheme, encoded) in cases {
            let reason = StoredHash::parse(scheme, encoded).unwrap_err();
            assert!(!reason.contains(encoded), "{reason}");
        }
    }

    #[test]
    fn scheme_names_are_case_insensitive_and_debug_hides_the_hash() {
        assert_eq!(Scheme::from_name("sha512-crypt"), Some(Scheme::Sha512Crypt));
        assert_eq!(Scheme::from_name("MD5-CRYPT"), None);
        let hash = hash_password(b"pw", cheap_cost(Scheme::BlfCrypt)).unwrap();
        assert!(!format!("{hash:?}").contains('$'));
    }
}
