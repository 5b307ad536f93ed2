//! Web3 Secret Storage v3: the encrypted key file geth and Foundry write.
//!
//! Reads scrypt and PBKDF2-HMAC-SHA256 files with any cost up to a bound;
//! writes scrypt with one of two costs ([`Cost`]): N = 2^15, r = 8, p = 1
//! (32 MiB, well under a second on a Cortex-A53) for a person's key, rather
//! than geth's 256 MiB "standard" set, and N = 2^13, r = 8, p = 4 (8 MiB, the
//! same work) for a gateway's own key, which the agent unlocks at every start
//! on a 512 MiB board. Both are plain v3 files that geth and Foundry read.

use std::path::Path;

use aes::cipher::{KeyIvInit, StreamCipher};
use alloy_primitives::{Address, keccak256};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::Error;
use super::signer::Signer;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// scrypt cost (log2 N) of a person's new key file ([`Cost::Standard`]).
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// scrypt cost of a gateway's own new key file ([`Cost::Gateway`]).
const GATEWAY_SCRYPT_LOG_N: u8 = 13;
/// p makes up the work the smaller N takes away: scrypt runs its p lanes one
/// after another in the same 128·r·N buffer, so N = 2^13 with p = 4 costs a
/// guess as much time as N = 2^15 with p = 1, in a quarter of the memory
/// (geth's "light" set does the same: N = 2^12, p = 6).
const GATEWAY_SCRYPT_P: u32 = 4;
/// What unlocking a gateway's key may cost in memory: 8 MiB for scrypt's
/// work buffer and 64 KiB for its block buffer. The agent's start-up peak
/// (VmHWM) must stay within 16 MiB on a 512 MiB board and the KDF is most of
/// it: N = 2^15 at r = 8 (32 MiB) alone was twice that.
pub const GATEWAY_KDF_MEMORY_BUDGET: u64 = (8 << 20) + (64 << 10);
const DKLEN: usize = 32;
/// Refuse files asking for absurd work: a hostile file must not exhaust memory.
const MAX_SCRYPT_LOG_N: u8 = 20;
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(alias = "Crypto")]
    crypto: Crypto,
}

#[derive(Serialize, Deserialize)]
struct Crypto {
    cipher: String,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: String,
    kdfparams: serde_json::Value,
    mac: String,
}

#[derive(Serialize, Deserialize)]
struct CipherParams {
    iv: String,
}

#[derive(Deserialize)]
struct ScryptParams {
    dklen: usize,
    n: u64,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Deserialize)]
struct Pbkdf2Params {
    dklen: usize,
    c: u32,
    prf: String,
    salt: String,
}

fn bad(why: impl Into<String>) -> Error {
    Error::Keystore(why.into())
}

fn unhex(field: &str, s: &str) -> Result<Vec<u8>, Error> {
    alloy_primitives::hex::decode(s).map_err(|_| bad(format!("`{field}` is not hex")))
}

/// Decrypts a key file's JSON with `passphrase`.
fn decrypt(json: &str, passphrase: &[u8]) -> Result<Signer, Error> {
    let file: KeyFile =
        serde_json::from_str(json).map_err(|e| bad(format!("not a Web3 v3 key file: {e}")))?;
    if file.version != 3 {
        return Err(bad(format!(
            "version {} is not supported (only 3)",
            file.version
        )));
    }
    let c = &file.crypto;
    if c.cipher != "aes-128-ctr" {
        return Err(bad(format!(
            "cipher `{}` is not supported (only aes-128-ctr)",
            c.cipher
        )));
    }
    let derived = derive_key(&c.kdf, &c.kdfparams, passphrase)?;
    let ciphertext = unhex("ciphertext", &c.ciphertext)?;
    let mac = keccak256([&derived[16..32], &ciphertext[..]].concat());
    let expected = unhex("mac", &c.mac)?;
    if mac.as_slice().ct_eq(&expected).unwrap_u8() != 1 {
        return Err(Error::WrongPassphrase);
    }
    let iv = unhex("iv", &c.cipherparams.iv)?;
    if iv.len() != 16 {
        return Err(bad("iv must be 16 bytes"));
    }
    let mut secret = ciphertext;
    let mut cipher = Aes128Ctr::new(derived[..16].into(), iv.as_slice().into());
    cipher.apply_keystream(&mut secret);
    let signer = Signer::from_bytes(&secret)?;
    if let Some(addr) = &file.address {
        let stated: Address = format!("0x{}", addr.trim_start_matches("0x"))
            .parse()
            .map_err(|_| bad("`address` is not an address"))?;
        if stated != signer.address() {
            return Err(bad(format!(
                "file says address {stated} but the key is {}",
                signer.address()
            )));
        }
    }
    Ok(signer)
}

fn derive_key(kdf: &str, params: &serde_json::Value, pass: &[u8]) -> Result<[u8; DKLEN], Error> {
    let mut out = [0u8; DKLEN];
    match kdf {
        "scrypt" => {
            let p: ScryptParams = serde_json::from_value(params.clone())
                .map_err(|e| bad(format!("bad scrypt parameters: {e}")))?;
            if p.dklen != DKLEN {
                return Err(bad(format!("dklen {} is not 32", p.dklen)));
            }
            if !p.n.is_power_of_two() || p.n < 2 {
                return Err(bad(format!("scrypt n = {} is not a power of two", p.n)));
            }
            let log_n = u8::try_from(p.n.trailing_zeros()).unwrap_or(u8::MAX);
            if log_n > MAX_SCRYPT_LOG_N {
                return Err(bad(format!(
                    "scrypt n = 2^{log_n} is too costly (max 2^{MAX_SCRYPT_LOG_N})"
                )));
            }
            // Memory is 128·r·N and time grows with p: bound both.
            if p.r == 0 || p.r > 32 || p.p == 0 || p.p > 16 {
                return Err(bad(format!(
                    "scrypt r = {}, p = {} are out of range (r <= 32, p <= 16)",
                    p.r, p.p
                )));
            }
            let params = scrypt::Params::new(log_n, p.r, p.p, DKLEN)
                .map_err(|e| bad(format!("bad scrypt parameters: {e}")))?;
            scrypt::scrypt(pass, &unhex("salt", &p.salt)?, &params, &mut out)
                .map_err(|e| bad(format!("scrypt: {e}")))?;
        }
        "pbkdf2" => {
            let p: Pbkdf2Params = serde_json::from_value(params.clone())
                .map_err(|e| bad(format!("bad pbkdf2 parameters: {e}")))?;
            if p.prf != "hmac-sha256" || p.dklen != DKLEN {
                return Err(bad(format!(
                    "pbkdf2 with {} / dklen {} is not supported",
                    p.prf, p.dklen
                )));
            }
            if p.c == 0 || p.c > MAX_PBKDF2_ROUNDS {
                return Err(bad(format!("pbkdf2 c = {} is out of range", p.c)));
            }
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(pass, &unhex("salt", &p.salt)?, p.c, &mut out);
        }
        other => {
            return Err(bad(format!(
                "kdf `{other}` is not supported (scrypt, pbkdf2)"
            )));
        }
    }
    Ok(out)
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| Error::Random(e.to_string()))?;
    Ok(b)
}

/// The scrypt cost a new key file is written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// A person's key (a buyer's, an operator's): N = 2^15, r = 8, p = 1.
    Standard,
    /// A gateway's own key, unlocked by the agent at every start on the
    /// board: N = 2^13, r = 8, p = 4, within [`GATEWAY_KDF_MEMORY_BUDGET`].
    Gateway,
}

impl Cost {
    /// (log2 N, r, p).
    pub const fn params(self) -> (u8, u32, u32) {
        match self {
            Cost::Standard => (SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P),
            Cost::Gateway => (GATEWAY_SCRYPT_LOG_N, SCRYPT_R, GATEWAY_SCRYPT_P),
        }
    }

    /// Bytes scrypt allocates to derive the key: its 128·r·N work buffer
    /// plus the 128·r·p block it mixes (the `scrypt` crate's two buffers).
    pub const fn memory(self) -> u64 {
        let (log_n, r, p) = self.params();
        128 * r as u64 * (1u64 << log_n) + 128 * r as u64 * p as u64
    }
}

/// Encrypts `signer`'s key under `passphrase` as Web3 v3 JSON, at the
/// standard cost.
pub fn encrypt(signer: &Signer, passphrase: &[u8]) -> Result<String, Error> {
    encrypt_at(signer, passphrase, Cost::Standard)
}

/// Encrypts `signer`'s key under `passphrase` as Web3 v3 JSON at `cost`.
fn encrypt_at(signer: &Signer, passphrase: &[u8], cost: Cost) -> Result<String, Error> {
    let (log_n, r, p) = cost.params();
    encrypt_with(signer, passphrase, log_n, r, p)
}

fn encrypt_with(
    signer: &Signer,
    passphrase: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<String, Error> {
    let salt: [u8; 32] = random()?;
    let iv: [u8; 16] = random()?;
    let params =
        scrypt::Params::new(log_n, r, p, DKLEN).map_err(|e| bad(format!("scrypt: {e}")))?;
    let mut derived = [0u8; DKLEN];
    scrypt::scrypt(passphrase, &salt, &params, &mut derived)
        .map_err(|e| bad(format!("scrypt: {e}")))?;
    let mut ciphertext = signer.secret_bytes().to_vec();
    Aes128Ctr::new(derived[..16].into(), iv.as_slice().into()).apply_keystream(&mut ciphertext);
    let mac = keccak256([&derived[16..32], &ciphertext[..]].concat());
    let id: [u8; 16] = random()?;
    fn hex(b: impl AsRef<[u8]>) -> String {
        alloy_primitives::hex::encode(b)
    }
    let file = KeyFile {
        version: 3,
        id: uuid_v4(id),
        address: Some(hex(signer.address())),
        crypto: Crypto {
            cipher: "aes-128-ctr".into(),
            cipherparams: CipherParams { iv: hex(iv) },
            ciphertext: hex(&ciphertext),
            kdf: "scrypt".into(),
            kdfparams: serde_json::json!({
                "dklen": DKLEN, "n": 1u64 << log_n, "r": r, "p": p, "salt": hex(salt)
            }),
            mac: hex(mac),
        },
    };
    serde_json::to_string_pretty(&file).map_err(|e| bad(e.to_string()))
}

/// A random (version 4) UUID in its text form.
fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = alloy_primitives::hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Reads and decrypts a key file.
pub fn load(path: &Path, passphrase: &[u8]) -> Result<Signer, Error> {
    let json = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    decrypt(&json, passphrase).map_err(|e| match e {
        Error::Keystore(why) => bad(format!("{}: {why}", path.display())),
        Error::WrongPassphrase => Error::WrongPassphrase,
        other => other,
    })
}

/// Writes a new key file readable by its owner only, at the standard cost;
/// refuses to overwrite.
pub fn save(path: &Path, signer: &Signer, passphrase: &[u8]) -> Result<(), Error> {
    save_at(path, signer, passphrase, Cost::Standard)
}

/// As [`save`], at `cost`.
pub(crate) fn save_at(
    path: &Path,
    signer: &Signer,
    passphrase: &[u8],
    cost: Cost,
) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let json = encrypt_at(signer, passphrase, cost)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| bad(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(json.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| bad(format!("cannot write {}: {e}", path.display())))
}

/// The passphrase: from `file` if given (trailing newline dropped), else
/// from `DEDGE_PASSPHRASE`. Never from the board file.
pub fn passphrase(file: Option<&Path>) -> Result<Vec<u8>, Error> {
    passphrase_from(file, "DEDGE_PASSPHRASE")
}

/// As [`passphrase`], with the environment variable named.
pub(crate) fn passphrase_from(file: Option<&Path>, env: &str) -> Result<Vec<u8>, Error> {
    if let Some(path) = file {
        let mut bytes = std::fs::read(path).map_err(|e| {
            bad(format!(
                "cannot read passphrase file {}: {e}",
                path.display()
            ))
        })?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        return Ok(bytes);
    }
    std::env::var_os(env)
        .map(std::os::unix::ffi::OsStringExt::into_vec)
        .ok_or_else(|| {
            bad(format!(
                "no passphrase: give a passphrase file or set {env}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_the_wrong_passphrase() {
        let s = Signer::random().unwrap();
        let json = encrypt_with(&s, b"correct horse", 10, SCRYPT_R, SCRYPT_P).unwrap();
        assert_eq!(
            decrypt(&json, b"correct horse").unwrap().address(),
            s.address()
        );
        assert!(matches!(
            decrypt(&json, b"wrong"),
            Err(Error::WrongPassphrase)
        ));
    }

    // Web3 Secret Storage test vector (PBKDF2), from the format's spec.
    const PBKDF2_VECTOR: &str = r#"{
        "crypto": {"cipher": "aes-128-ctr",
            "cipherparams": {"iv": "6087dab2f9fdbbfaddc31a909735c1e6"},
            "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
            "kdf": "pbkdf2",
            "kdfparams": {"c": 262144, "dklen": 32, "prf": "hmac-sha256",
                "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},
            "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},
        "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6", "version": 3}"#;

    #[test]
    fn decrypts_the_spec_test_vector() {
        let s = decrypt(PBKDF2_VECTOR, b"testpassword").unwrap();
        assert_eq!(
            alloy_primitives::hex::encode(s.secret_bytes()),
            "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d"
        );
    }

    #[test]
    fn hostile_files_are_refused_with_a_reason() {
        let tamper = |from: &str, to: &str| PBKDF2_VECTOR.replace(from, to);
        let cases = [
            (tamper("\"version\": 3", "\"version\": 4"), "version 4"),
            (tamper("aes-128-ctr", "aes-256-gcm"), "cipher"),
            (
                tamper("\"kdf\": \"pbkdf2\"", "\"kdf\": \"argon2\""),
                "kdf `argon2`",
            ),
            (tamper("\"c\": 262144", "\"c\": 4000000000"), "out of range"),
            ("{}".to_string(), "not a Web3 v3 key file"),
        ];
        for (json, why) in cases {
            let err = decrypt(&json, b"testpassword").unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
        let huge_n = encrypt_with(&Signer::random().unwrap(), b"p", 10, SCRYPT_R, SCRYPT_P)
            .unwrap()
            .replace("\"n\": 1024", "\"n\": 1099511627776");
        let err = decrypt(&huge_n, b"p").unwrap_err().to_string();
        assert!(err.contains("too costly"), "{err}");
    }

    #[test]
    fn save_refuses_overwrite_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let s = Signer::random().unwrap();
        save(&path, &s, b"p").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(save(&path, &s, b"p").is_err());
        assert_eq!(load(&path, b"p").unwrap().address(), s.address());
    }

    #[test]
    fn a_gateway_key_stays_within_the_memory_budget() {
        // The cost itself, by scrypt's formula.
        assert!(
            Cost::Gateway.memory() <= GATEWAY_KDF_MEMORY_BUDGET,
            "gateway key: scrypt needs {} bytes, budget {GATEWAY_KDF_MEMORY_BUDGET}",
            Cost::Gateway.memory()
        );
        assert!(Cost::Standard.memory() > GATEWAY_KDF_MEMORY_BUDGET);
        // No less work per guess than the standard cost: N·p.
        let work = |c: Cost| {
            let (log_n, _, p) = c.params();
            (1u64 << log_n) * u64::from(p)
        };
        assert!(work(Cost::Gateway) >= work(Cost::Standard));
        // What gets written is what was chosen, and a file with p > 1 (as
        // gateway keys are) reads back.
        let s = Signer::random().unwrap();
        let json = encrypt_with(&s, b"p", 10, SCRYPT_R, GATEWAY_SCRYPT_P).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["crypto"]["kdfparams"]["p"], GATEWAY_SCRYPT_P);
        assert_eq!(decrypt(&json, b"p").unwrap().address(), s.address());
    }

    #[test]
    fn save_at_writes_the_gateway_cost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let s = Signer::random().unwrap();
        save_at(&path, &s, b"p", Cost::Gateway).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (log_n, r, p) = Cost::Gateway.params();
        let kdf = &v["crypto"]["kdfparams"];
        assert_eq!(kdf["n"], 1u64 << log_n);
        assert_eq!(
            (kdf["r"].as_u64(), kdf["p"].as_u64()),
            (Some(r.into()), Some(p.into()))
        );
        assert_eq!(load(&path, b"p").unwrap().address(), s.address());
    }
}
