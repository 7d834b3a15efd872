//! AWS Signature Version 4, verified by the mock's own reading of AWS's
//! spec ("Create a signed AWS API request"), not by the SDK's signer: the
//! gateway signs with `aws-sigv4`, and checking it with the same code would
//! prove nothing.
//!
//! The canonical request is rebuilt from what arrived on the wire: the raw
//! path, each byte outside `A-Za-z0-9-._~/` encoded again (services other
//! than S3 double-encode, so `%3A` is signed as `%253A`); the query's
//! parameters decoded, re-encoded and sorted; the signed headers lowercase,
//! trimmed, sorted; the body's SHA-256. Refusals carry the AWS error type and
//! message a real service answers with; all are 403.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use ring::{digest, hmac};

use crate::config::MockAws;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
/// How far `x-amz-date` may be from the mock's clock, as at AWS.
const SKEW: Duration = Duration::from_secs(5 * 60);

/// What a signature covers, as the request arrived.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// The path as sent, percent-encoding and all.
    pub path: &'a str,
    /// The raw query string, `""` when there is none.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The URI's authority: over HTTP/2 `:authority` stands for `host`.
    pub authority: Option<&'a str>,
    pub body: &'a [u8],
}

/// The AWS error type of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No `Authorization` at all.
    MissingAuthenticationToken,
    /// An `Authorization` that is not a complete SigV4 one.
    IncompleteSignature,
    /// An unknown access key id, or a wrong or missing session token.
    UnrecognizedClient,
    /// A signature that does not verify.
    InvalidSignature,
}

impl Kind {
    pub(crate) fn error_type(self) -> &'static str {
        match self {
            Kind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Kind::IncompleteSignature => "IncompleteSignatureException",
            Kind::UnrecognizedClient => "UnrecognizedClientException",
            Kind::InvalidSignature => "InvalidSignatureException",
        }
    }
}

/// Why a request's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub kind: Kind,
    pub message: String,
}

impl Refusal {
    fn new(kind: Kind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn missing() -> Refusal {
        Refusal::new(
            Kind::MissingAuthenticationToken,
            "Missing Authentication Token",
        )
    }

    pub(crate) fn unrecognized() -> Refusal {
        Refusal::new(
            Kind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        )
    }

    fn invalid(message: impl Into<String>) -> Refusal {
        Refusal::new(Kind::InvalidSignature, message)
    }

    fn mismatch() -> Refusal {
        Refusal::invalid("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
    }
}

/// `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=HEX`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    /// Lowercase and sorted, as they enter the canonical request.
    signed_headers: Vec<String>,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    fn parse(value: &'a str) -> Result<Authorization<'a>, Refusal> {
        let incomplete = |message: String| Refusal::new(Kind::IncompleteSignature, message);
        let Some(params) = value.strip_prefix(ALGORITHM).filter(|p| p.starts_with(' ')) else {
            return Err(incomplete(format!(
                "Authorization header must use the {ALGORITHM} algorithm."
            )));
        };
        let param = |name: &str| {
            params
                .split(',')
                .filter_map(|p| p.trim().split_once('='))
                .find_map(|(k, v)| (k == name).then_some(v))
        };
        let (credential, signed, signature) = (
            param("Credential"),
            param("SignedHeaders"),
            param("Signature"),
        );
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            let missing: Vec<String> = [
                ("Credential", credential),
                ("Signature", signature),
                ("SignedHeaders", signed),
            ]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
            .collect();
            return Err(incomplete(missing.join(" ")));
        };
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = scope.as_slice() else {
            return Err(incomplete(format!("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'")));
        };
        let mut signed_headers: Vec<String> =
            signed.split(';').map(|h| h.trim().to_lowercase()).collect();
        signed_headers.sort();
        Ok(Authorization {
            access_key_id,
            date,
            region,
            service,
            terminator,
            signed_headers,
            signature,
        })
    }

    fn signs(&self, header: &str) -> bool {
        self.signed_headers.iter().any(|h| h == header)
    }
}

/// Checks `req`'s SigV4 signature for `service` against the one identity
/// `aws`, with the clock at `now`, in the order AWS does: the header's
/// shape, who signed, the scope, what is signed, the time, the signature.
pub(crate) fn verify(
    aws: &MockAws,
    service: &str,
    req: &Request<'_>,
    now: SystemTime,
) -> Result<(), Refusal> {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let auth = Authorization::parse(header("authorization").ok_or_else(Refusal::missing)?)?;
    let amz_date = header("x-amz-date").ok_or_else(|| {
        Refusal::new(
            Kind::IncompleteSignature,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    if auth.access_key_id != aws.access_key_id
        || header("x-amz-security-token") != aws.session_token.as_deref()
    {
        return Err(Refusal::unrecognized());
    }
    let signed_at =
        parse_amz_date(amz_date).ok_or_else(|| Refusal::invalid("Invalid X-Amz-Date."))?;
    let day = &amz_date[..8];
    if auth.date != day {
        return Err(Refusal::invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{day}', from '{amz_date}'.",
            auth.date
        )));
    }
    if auth.region != aws.region {
        return Err(Refusal::invalid(
            "Credential should be scoped to a valid region. ",
        ));
    }
    if auth.service != service {
        return Err(Refusal::invalid(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if auth.terminator != TERMINATOR {
        return Err(Refusal::invalid(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'. ",
            auth.terminator
        )));
    }
    let token = aws.session_token.as_ref().map(|_| "x-amz-security-token");
    for (name, shown) in [
        (Some("host"), "'Host' or ':authority'"),
        (Some("x-amz-date"), "'X-Amz-Date'"),
        (token, "'X-Amz-Security-Token'"),
    ] {
        if name.is_some_and(|name| !auth.signs(name)) {
            return Err(Refusal::invalid(format!(
                "{shown} must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    check_time(signed_at, now)?;
    let body_hash = hex(digest::digest(&digest::SHA256, req.body).as_ref());
    let payload_hash = match header("x-amz-content-sha256") {
        Some(declared) if auth.signs("x-amz-content-sha256") => {
            // A signed hash must be the body's, or the body could be swapped.
            if declared != body_hash {
                return Err(Refusal::mismatch());
            }
            declared
        }
        _ => &body_hash,
    };
    let canonical = canonical_request(req, &auth.signed_headers, payload_hash);
    let scope = format!("{day}/{}/{service}/{TERMINATOR}", aws.region);
    let key = signing_key(&aws.secret_access_key, day, &aws.region, service);
    let signature = unhex(auth.signature).ok_or_else(Refusal::mismatch)?;
    // `hmac::verify` compares in constant time.
    hmac::verify(
        &key,
        string_to_sign(amz_date, &scope, &canonical).as_bytes(),
        &signature,
    )
    .map_err(|_| Refusal::mismatch())
}

/// Refuses a signature made more than [`SKEW`] before or after `now`.
fn check_time(signed_at: u64, now: SystemTime) -> Result<(), Refusal> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let skew = SKEW.as_secs();
    if signed_at + skew < now {
        return Err(Refusal::invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - 5 min.)",
            format_amz_date(signed_at),
            format_amz_date(now.saturating_sub(skew)),
            format_amz_date(now),
        )));
    }
    if signed_at > now + skew {
        return Err(Refusal::invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + 5 min.)",
            format_amz_date(signed_at),
            format_amz_date(now + skew),
            format_amz_date(now),
        )));
    }
    Ok(())
}

/// The canonical request: method, URI, query, headers, signed headers and
/// payload hash, one per line.
fn canonical_request(req: &Request<'_>, signed_headers: &[String], payload_hash: &str) -> String {
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| collapse(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let value = match (values.is_empty(), name.as_str(), req.authority) {
            (true, "host", Some(authority)) => authority.to_owned(),
            _ => values.join(","),
        };
        headers.push_str(&format!("{name}:{value}\n"));
    }
    format!(
        "{}\n{}\n{}\n{headers}\n{}\n{payload_hash}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        signed_headers.join(";"),
    )
}

/// The path as sent, encoded once more (`/` kept).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    encode(path.as_bytes(), true)
}

/// Parameters decoded (`+` is a space, as in a form), each name and value
/// encoded, sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(name), false), encode(&decode(value), false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value trimmed, its inner runs of spaces made one.
fn collapse(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = digest::digest(&digest::SHA256, canonical_request.as_bytes());
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex(hash.as_ref()))
}

/// `HMAC("AWS4" + secret, date)`, then region, service and `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
    for part in [date, region, service, TERMINATOR] {
        key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&key, part.as_bytes()).as_ref(),
        );
    }
    key
}

/// Percent-encodes every byte but `A-Za-z0-9-._~` (and `/` in a path),
/// upper-case hex.
fn encode(bytes: &[u8], path: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (path && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes a query name or value; `+` is a space, a stray `%` is
/// kept.
fn decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' => bytes.get(i + 1..i + 3).and_then(hex_byte),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes.chunks(2).map(hex_byte).collect()
}

/// Two hex digits as a byte (no sign, unlike `from_str_radix`).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| char::from(c).to_digit(16);
    match pair {
        [high, low] => u8::try_from(digit(*high)? * 16 + digit(*low)?).ok(),
        _ => None,
    }
}

/// `YYYYMMDDTHHMMSSZ` as Unix seconds; `None` unless it is exactly that
/// and a real instant.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    // A date like Feb 30 reads back as another day: not a real instant.
    (format_amz_date(secs) == s).then_some(secs)
}

/// Unix seconds as `YYYYMMDDTHHMMSSZ`.
fn format_amz_date(secs: u64) -> String {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rest = secs % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 of a (proleptic Gregorian) date from 1970 on
/// (Howard Hinnant's algorithm, with eras counted from year 0).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).saturating_sub(719_468)
}

/// The date of a day counted from 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";

    fn suite() -> MockAws {
        MockAws {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SECRET.into(),
            session_token: None,
            region: "us-east-1".into(),
        }
    }

    /// 2015-08-30T12:36:00Z, the test suite's clock.
    fn then() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(parse_amz_date(DATE).unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    /// `Authorization` for `req` signed with `aws` at `amz_date`, by the same
    /// canonical form the verifier rebuilds.
    fn sign(aws: &MockAws, service: &str, req: &Request<'_>, signed: &[&str]) -> String {
        let amz_date = req.headers["x-amz-date"].to_str().unwrap();
        let day = &amz_date[..8];
        let signed: Vec<String> = signed.iter().map(|s| s.to_string()).collect();
        let body_hash = hex(digest::digest(&digest::SHA256, req.body).as_ref());
        let canonical = canonical_request(req, &signed, &body_hash);
        let scope = format!("{day}/{}/{service}/{TERMINATOR}", aws.region);
        let key = signing_key(&aws.secret_access_key, day, &aws.region, service);
        let tag = hmac::sign(
            &key,
            string_to_sign(amz_date, &scope, &canonical).as_bytes(),
        );
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={}",
            aws.access_key_id,
            signed.join(";"),
            hex(tag.as_ref())
        )
    }

    fn suite_request<'a>(
        method: &'a str,
        path: &'a str,
        query: &'a str,
        headers: &'a HeaderMap,
    ) -> Request<'a> {
        Request {
            method,
            path,
            query,
            headers,
            authority: None,
            body: b"",
        }
    }

    fn suite_auth(signature: &str) -> String {
        format!("{ALGORITHM} Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}")
    }

    #[test]
    fn aws_test_suite_vectors_verify() {
        for (method, path, query, signature) in [
            (
                "GET",
                "/",
                "",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "/",
                "",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
            (
                "GET",
                "/",
                "Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
        ] {
            let auth = suite_auth(signature);
            let h = headers(&[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", DATE),
                ("authorization", &auth),
            ]);
            let req = suite_request(method, path, query, &h);
            assert_eq!(
                verify(&suite(), "service", &req, then()),
                Ok(()),
                "{method} {path}?{query}"
            );
            assert_eq!(
                sign(&suite(), "service", &req, &["host", "x-amz-date"]),
                auth
            );
        }
    }

    #[test]
    fn get_vanilla_canonical_request_hashes_as_published() {
        let h = headers(&[("host", "example.amazonaws.com"), ("x-amz-date", DATE)]);
        let req = suite_request("GET", "/", "", &h);
        let signed = ["host".to_owned(), "x-amz-date".to_owned()];
        let canonical = canonical_request(
            &req,
            &signed,
            &hex(digest::digest(&digest::SHA256, b"").as_ref()),
        );
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sts = string_to_sign(DATE, "20150830/us-east-1/service/aws4_request", &canonical);
        assert_eq!(
            sts.lines().last(),
            Some("bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        );
    }

    /// A Bedrock-like request signed by the test's `sign`, then `change`d.
    fn refused(
        change: impl FnOnce(&mut HeaderMap, &mut Vec<u8>, &mut MockAws),
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let mut aws = suite();
        let mut h = headers(&[
            ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
            ("x-amz-date", DATE),
            ("content-type", "application/json"),
        ]);
        let mut body = br#"{"messages":[]}"#.to_vec();
        let auth = sign(
            &aws,
            "bedrock",
            &Request {
                body: &body,
                ..suite_request("POST", "/model/m/converse", "", &h)
            },
            &["content-type", "host", "x-amz-date"],
        );
        h.insert("authorization", auth.parse().unwrap());
        change(&mut h, &mut body, &mut aws);
        let req = Request {
            body: &body,
            ..suite_request("POST", "/model/m/converse", "", &h)
        };
        verify(&aws, "bedrock", &req, now)
    }

    #[test]
    fn a_changed_request_is_refused() {
        assert_eq!(refused(|_, _, _| {}, then()), Ok(()));
        let mismatch = Err(Refusal::mismatch());
        assert_eq!(
            refused(|_, body, _| body.push(b' '), then()),
            mismatch,
            "tampered body"
        );
        assert_eq!(
            refused(
                |h, _, _| {
                    h.insert("content-type", "text/plain".parse().unwrap());
                },
                then()
            ),
            mismatch,
            "changed signed header"
        );
        assert_eq!(
            refused(
                |h, _, _| {
                    h.insert("x-unsigned", "anything".parse().unwrap());
                },
                then()
            ),
            Ok(()),
            "unsigned headers are free"
        );
        assert_eq!(
            refused(|_, _, aws| aws.secret_access_key.push('x'), then()),
            mismatch,
            "wrong secret"
        );
        let wrong_region = refused(|_, _, aws| aws.region = "eu-west-1".into(), then());
        assert_eq!(
            wrong_region,
            Err(Refusal::invalid(
                "Credential should be scoped to a valid region. "
            ))
        );
        assert_eq!(
            refused(|_, _, aws| aws.access_key_id = "AKIDOTHER".into(), then()),
            Err(Refusal::unrecognized())
        );
        assert_eq!(
            refused(
                |h, _, _| {
                    h.remove("authorization");
                },
                then()
            ),
            Err(Refusal::missing())
        );
    }

    #[test]
    fn a_signature_older_or_newer_than_five_minutes_is_refused() {
        let five = Duration::from_secs(300);
        assert_eq!(refused(|_, _, _| {}, then() + five), Ok(()));
        assert_eq!(refused(|_, _, _| {}, then() - five), Ok(()));
        assert_eq!(
            refused(|_, _, _| {}, then() + five + Duration::from_secs(1)),
            Err(Refusal::invalid(
                "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T124101Z - 5 min.)"
            ))
        );
        let early = refused(|_, _, _| {}, then() - five - Duration::from_secs(1));
        assert!(
            early
                .as_ref()
                .is_err_and(|r| r.message.starts_with("Signature not yet current:")),
            "{early:?}"
        );
    }

    #[test]
    fn host_date_and_session_token_must_be_signed() {
        let h = headers(&[("host", "h"), ("x-amz-date", DATE)]);
        let only_date = sign(
            &suite(),
            "service",
            &suite_request("GET", "/", "", &h),
            &["x-amz-date"],
        );
        let mut with_auth = h.clone();
        with_auth.insert("authorization", only_date.parse().unwrap());
        let refusal = verify(
            &suite(),
            "service",
            &suite_request("GET", "/", "", &with_auth),
            then(),
        );
        assert_eq!(refusal.unwrap_err().kind, Kind::InvalidSignature);

        let aws = MockAws {
            session_token: Some("token".into()),
            ..suite()
        };
        let h = headers(&[
            ("host", "h"),
            ("x-amz-date", DATE),
            ("x-amz-security-token", "token"),
        ]);
        let check = |signed: &[&str], token: Option<&str>| {
            let auth = sign(&aws, "service", &suite_request("GET", "/", "", &h), signed);
            let mut sent = h.clone();
            sent.insert("authorization", auth.parse().unwrap());
            match token {
                Some(token) => sent.insert("x-amz-security-token", token.parse().unwrap()),
                None => sent.remove("x-amz-security-token"),
            };
            verify(
                &aws,
                "service",
                &suite_request("GET", "/", "", &sent),
                then(),
            )
            .map_err(|r| r.kind)
        };
        let all = ["host", "x-amz-date", "x-amz-security-token"];
        assert_eq!(check(&all, Some("token")), Ok(()));
        assert_eq!(
            check(&["host", "x-amz-date"], Some("token")),
            Err(Kind::InvalidSignature)
        );
        assert_eq!(check(&all, Some("other")), Err(Kind::UnrecognizedClient));
        assert_eq!(check(&all, None), Err(Kind::UnrecognizedClient));
    }

    #[test]
    fn the_path_is_encoded_again_and_the_query_sorted() {
        assert_eq!(
            canonical_uri("/model/a%3A0/converse"),
            "/model/a%253A0/converse"
        );
        assert_eq!(canonical_uri("/a b:c"), "/a%20b%3Ac");
        assert_eq!(
            canonical_query("b=2&a=z&a=y+x&c%2F=%7e"),
            "a=y%20x&a=z&b=2&c%2F=~"
        );
        let h = headers(&[("host", "bedrock"), ("x-amz-date", DATE)]);
        let path = "/model/a%3A0/converse";
        let auth = sign(
            &suite(),
            "bedrock",
            &suite_request("POST", path, "", &h),
            &["host", "x-amz-date"],
        );
        let mut sent = h.clone();
        sent.insert("authorization", auth.parse().unwrap());
        let req = suite_request("POST", path, "", &sent);
        assert_eq!(verify(&suite(), "bedrock", &req, then()), Ok(()));
        let signed = ["host".to_owned(), "x-amz-date".to_owned()];
        let canonical = canonical_request(&req, &signed, "x");
        assert_eq!(canonical.lines().nth(1), Some("/model/a%253A0/converse"));
        // The same id sent decoded is another request: the signature breaks.
        let decoded = suite_request("POST", "/model/a:0/converse", "", &sent);
        assert_eq!(
            verify(&suite(), "bedrock", &decoded, then()),
            Err(Refusal::mismatch())
        );
    }

    #[test]
    fn header_values_are_trimmed_and_the_authority_stands_for_host() {
        let h = headers(&[("x-amz-date", DATE), ("x-a", "  a   b  "), ("x-a", "c")]);
        let req = Request {
            authority: Some("example.amazonaws.com"),
            ..suite_request("GET", "/", "", &h)
        };
        let signed = ["host".to_owned(), "x-a".to_owned()];
        let canonical = canonical_request(&req, &signed, "-");
        assert!(
            canonical.contains("\nhost:example.amazonaws.com\nx-a:a b,c\n\nhost;x-a\n"),
            "{canonical}"
        );
    }

    #[test]
    fn malformed_authorizations_are_incomplete() {
        for value in [
            "Bearer token",
            "AWS4-HMAC-SHA256 Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830, SignedHeaders=host, Signature=00",
        ] {
            let h = headers(&[
                ("host", "h"),
                ("x-amz-date", DATE),
                ("authorization", value),
            ]);
            let refusal = verify(
                &suite(),
                "service",
                &suite_request("GET", "/", "", &h),
                then(),
            );
            assert_eq!(
                refusal.unwrap_err().kind,
                Kind::IncompleteSignature,
                "{value}"
            );
        }
    }

    #[test]
    fn amz_dates_read_and_print_back() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date(DATE), Some(1_440_938_160));
        assert_eq!(
            parse_amz_date("20240229T235959Z")
                .map(format_amz_date)
                .as_deref(),
            Some("20240229T235959Z")
        );
        for bad in [
            "20150230T000000Z",
            "2015-08-30T12:36",
            "20150830T123600",
            "20151330T000000Z",
            "2015083OT123600Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }
}
