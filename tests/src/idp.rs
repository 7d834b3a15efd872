//! [`Idp`]: an identity provider of the suites' own, on 127.0.0.1 at a port
//! picked at run time. It makes signing keys (RS256 with the `rsa` crate,
//! ES256 and EdDSA with ring), serves their JWKS at `/jwks`, and signs the
//! JWTs the suites present to the proxy. Keys can be added while it runs
//! (a rotation at the identity provider), and it counts the JWKS fetches.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `iss` of every token the suites' identity provider signs.
pub const ISSUER: &str = "https://idp.sluice.test";

/// One signing key: what signs with it, and its public JWK.
pub struct SigningKey {
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
    /// The public key's bytes as a key-confusion attacker would use them
    /// as an HMAC secret (the RSA modulus, the EC point, the Ed25519 key).
    pub public_bytes: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A new key for `alg` (RS256, ES256 or EdDSA), listed as `kid`.
    pub fn generate(alg: Algorithm, kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        match alg {
            Algorithm::RS256 => {
                let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                    .expect("making an RSA key");
                let der = key.to_pkcs1_der().expect("encoding the RSA key");
                let n = key.n().to_bytes_be();
                SigningKey {
                    alg,
                    encoding: EncodingKey::from_rsa_der(der.as_bytes()),
                    jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                        "n": b64(&n), "e": b64(&key.e().to_bytes_be())}),
                    public_bytes: n,
                }
            }
            Algorithm::ES256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .expect("making an EC key");
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .expect("reading the EC key");
                let point = pair.public_key().as_ref().to_vec();
                SigningKey {
                    alg,
                    encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
                    jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                        "x": b64(&point[1..33]), "y": b64(&point[33..])}),
                    public_bytes: point,
                }
            }
            Algorithm::EdDSA => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("making an Ed25519 key");
                let pair =
                    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("reading the Ed25519 key");
                let public = pair.public_key().as_ref().to_vec();
                SigningKey {
                    alg,
                    encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
                    jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&public)}),
                    public_bytes: public,
                }
            }
            other => panic!("the suites' identity provider makes no {other:?} keys"),
        }
    }

    /// `claims` signed with this key, its header naming `kid`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing a token")
    }
}

/// The identity provider: its keys by `kid`, served as a JWKS.
pub struct Idp {
    keys: Arc<Mutex<BTreeMap<String, SigningKey>>>,
    fetches: Arc<AtomicU64>,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl Idp {
    /// Serves an empty JWKS until keys are added.
    pub fn start() -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the identity provider");
        let addr = listener.local_addr().expect("its address");
        let keys: Arc<Mutex<BTreeMap<String, SigningKey>>> = Arc::default();
        let fetches = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (keys, fetches, stop) = (keys.clone(), fetches.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let jwks = {
                        let keys = keys.lock().unwrap_or_else(|e| e.into_inner());
                        json!({"keys": keys.values().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
                    };
                    if answer(stream, &jwks) {
                        fetches.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        Idp {
            keys,
            fetches,
            addr,
            stop,
            server: Some(server),
        }
    }

    /// Where the JWKS is served.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// Makes and publishes a key for `alg` as `kid`.
    pub fn add_key(&self, alg: Algorithm, kid: &str) {
        let key = SigningKey::generate(alg, kid);
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kid.to_string(), key);
    }

    /// `claims` signed with key `kid`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(kid)
            .expect("a key of the provider")
            .sign(kid, claims)
    }

    /// What `f` makes of key `kid`'s public side (an attacker's view).
    pub fn with_key<T>(&self, kid: &str, f: impl FnOnce(&SigningKey) -> T) -> T {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        f(keys.get(kid).expect("a key of the provider"))
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// Reads one request head and answers it with `jwks` (closing the
/// connection); whether it was a `GET /jwks`.
fn answer(mut stream: TcpStream, jwks: &Value) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let is_jwks = head.starts_with(b"GET /jwks ");
    let (status, body) = if is_jwks {
        ("200 OK", jwks.to_string())
    } else {
        ("404 Not Found", "{}".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    is_jwks
}

/// Seconds since the Unix epoch now, for `exp`, `nbf` and `iat`.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
