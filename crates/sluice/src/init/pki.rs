//! The cluster's certificates: a CA made once per cluster and one certificate
//! per node, signed by it, good for both ends of a mutual-TLS QUIC connection.

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

/// DNS name every node certificate carries, whatever its node id, so a peer
/// can be verified as "a member of this cluster" before its id is known.
pub const CLUSTER_DNS_NAME: &str = "cluster.sluice";

const CA_VALIDITY: Duration = Duration::days(3650);
const NODE_VALIDITY: Duration = Duration::days(730);
/// Certificates start slightly in the past, for clocks a little behind.
const BACKDATE: Duration = Duration::hours(1);

/// The DNS name of node `id` in its certificate.
pub fn node_dns_name(id: u64) -> String {
    format!("node-{id}.sluice")
}

/// A CA able to sign node certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its private key, both PEM.
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// Makes a new CA for `cluster_id`.
    pub fn generate(cluster_id: &str) -> anyhow::Result<(Ca, PemPair)> {
        Ca::generate_named(format!("Sluice cluster CA {cluster_id}"))
    }

    /// Makes the CA that replaces `cluster_id`'s (`sluice cluster
    /// rotate-ca`): named apart from the one it replaces by its date, so
    /// the two are told apart where both are listed (the doctor's
    /// certificate checks during the rotation).
    pub fn generate_next(cluster_id: &str) -> anyhow::Result<(Ca, PemPair)> {
        let date = OffsetDateTime::now_utc().date();
        Ca::generate_named(format!("Sluice cluster CA {cluster_id} from {date}"))
    }

    fn generate_named(common_name: String) -> anyhow::Result<(Ca, PemPair)> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key)
            .context("self-signing the CA certificate")?;
        let pems = PemPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok((Ca { cert, key }, pems))
    }

    /// Loads an existing CA from its PEM certificate and key, checking that
    /// they belong together.
    pub fn load(cert_pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::from_pem(key_pem).context("parsing the CA key")?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|err| anyhow::anyhow!("parsing the CA certificate PEM: {err}"))?;
        let parsed = pem
            .parse_x509()
            .map_err(|err| anyhow::anyhow!("parsing the CA certificate: {err}"))?;
        if !parsed.is_ca() {
            bail!("the CA certificate is not a CA certificate");
        }
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            bail!("the CA key does not match the CA certificate");
        }
        let params =
            CertificateParams::from_ca_cert_pem(cert_pem).context("reading the CA certificate")?;
        // Re-signing the parsed parameters with the same key yields an issuer
        // with the same subject and key identifier as the file on disk, which
        // is all that signing node certificates takes from it.
        let cert = params
            .self_signed(&key)
            .context("loading the CA as an issuer")?;
        Ok(Ca { cert, key })
    }

    /// Issues node `id`'s certificate: SANs `node-<id>.sluice`,
    /// `cluster.sluice` and `ip`; server and client auth.
    pub fn issue_node(&self, id: u64, ip: IpAddr) -> anyhow::Result<PemPair> {
        self.issue_leaf(
            node_dns_name(id),
            vec![node_dns_name(id), CLUSTER_DNS_NAME.to_string()],
            &[ip],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
        .with_context(|| format!("issuing node {id}'s certificate"))
    }

    /// Issues node `id`'s admin API certificate: server auth only, for
    /// the DNS `names` and `ips` clients reach it by, and the loopback names
    /// every node answers on.
    pub fn issue_admin(
        &self,
        id: u64,
        names: &[String],
        ips: &[IpAddr],
    ) -> anyhow::Result<PemPair> {
        let name = format!("admin.{}", node_dns_name(id));
        let loopback = [
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ];
        let mut addresses: Vec<IpAddr> = Vec::new();
        for ip in ips.iter().chain(&loopback) {
            if !ip.is_unspecified() && !addresses.contains(ip) {
                addresses.push(*ip);
            }
        }
        let mut dns = vec![name.clone(), "localhost".to_string()];
        dns.extend(names.iter().cloned());
        self.issue_leaf(
            name,
            dns,
            &addresses,
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
        .with_context(|| format!("issuing node {id}'s admin certificate"))
    }

    /// A new certificate and key for the holder of `existing` (PEM), signed
    /// by this CA: the same common name, DNS and IP names and extended key
    /// usages, a fresh validity period. How `sluice cluster rotate-ca`
    /// moves every node onto a new CA without knowing how each certificate
    /// was first made (admin names given to `sluice init` live only there).
    pub fn reissue(&self, existing: &str) -> anyhow::Result<PemPair> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(existing.as_bytes())
            .map_err(|err| anyhow::anyhow!("parsing the certificate PEM: {err}"))?;
        let cert = pem
            .parse_x509()
            .map_err(|err| anyhow::anyhow!("parsing the certificate: {err}"))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .context("the certificate has no common name")?
            .to_string();
        let mut names = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut usages = Vec::new();
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            if eku.value.server_auth {
                usages.push(ExtendedKeyUsagePurpose::ServerAuth);
            }
            if eku.value.client_auth {
                usages.push(ExtendedKeyUsagePurpose::ClientAuth);
            }
        }
        self.issue_leaf(common_name.clone(), names, &ips, usages)
            .with_context(|| format!("reissuing the certificate of {common_name}"))
    }

    /// A certificate signed by this CA for `names` and `ips`, with a new
    /// key.
    fn issue_leaf(
        &self,
        common_name: String,
        names: Vec<String>,
        ips: &[IpAddr],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> anyhow::Result<PemPair> {
        let key = KeyPair::generate().context("generating a key")?;
        let mut params = CertificateParams::new(names).context("building the names")?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + NODE_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing")?;
        Ok(PemPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// 16 random bytes, top bit clear so the DER integer is positive.
fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    super::fill_random(&mut bytes)?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}
