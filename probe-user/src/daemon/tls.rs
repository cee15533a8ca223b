//! mTLS for the daemon's TCP listener (rustls through tonic): the server
//! and client configurations from PEM files, and a client's identities read
//! from its verified certificate (subject CN, then DNS and URI SANs), which
//! the [policy](super::policy) maps to what it may probe.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The daemon's certificate and key, and the CA its clients' certificates
/// must chain to (client certificates are required).
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl ServerTls {
    pub fn config(&self) -> Result<ServerTlsConfig, TlsError> {
        let id = Identity::from_pem(
            read("the daemon certificate", &self.cert)?,
            read("the daemon key", &self.key)?,
        );
        Ok(ServerTlsConfig::new()
            .identity(id)
            .client_ca_root(Certificate::from_pem(read(
                "the client CA",
                &self.client_ca,
            )?)))
    }
}

/// A client's CA (to verify the daemon) and its own certificate and key.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// `domain`: the name the daemon's certificate must carry (the host of its address).
    pub fn config(&self, domain: &str) -> Result<ClientTlsConfig, TlsError> {
        let mut c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("the CA", &self.ca)?))
            .domain_name(domain);
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            c = c.identity(Identity::from_pem(
                read("the client certificate", cert)?,
                read("the client key", key)?,
            ));
        }
        Ok(c)
    }
}

/// One DER element: (tag, contents, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l0, mut b) = b.split_first()?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let l = b[..n].iter().fold(0usize, |l, &x| l << 8 | x as usize);
        b = &b[n..];
        l
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The elements of a constructed DER value.
fn children(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = vec![];
    while let Some((t, c, rest)) = tlv(b) {
        out.push((t, c));
        b = rest;
    }
    out
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// The names a (verified) X.509 certificate gives its holder: subject CN
/// first, then DNS and URI subject alternative names.
pub fn cert_identities(der: &[u8]) -> Vec<String> {
    let mut out = vec![];
    let Some((0x30, cert, _)) = tlv(der) else {
        return out;
    };
    let Some((0x30, tbs, _)) = tlv(cert) else {
        return out;
    };
    // version [0] is optional; then serial, signature, issuer, validity, subject, key, …, [3] extensions.
    let fields: Vec<(u8, &[u8])> = children(tbs)
        .into_iter()
        .filter(|(t, _)| *t != 0xa0)
        .collect();
    if let Some((0x30, subject)) = fields.get(4) {
        for (_, rdn) in children(subject) {
            for (_, atv) in children(rdn) {
                if let [(0x06, oid), (_, value), ..] = children(atv)[..] {
                    if oid == OID_CN {
                        out.push(String::from_utf8_lossy(value).into_owned());
                    }
                }
            }
        }
    }
    if let Some((_, exts)) = fields.iter().find(|(t, _)| *t == 0xa3) {
        let exts = children(exts)
            .first()
            .map(|(_, c)| children(c))
            .unwrap_or_default();
        for (_, ext) in exts {
            let parts = children(ext);
            if parts
                .first()
                .is_some_and(|(t, oid)| *t == 0x06 && *oid == OID_SAN)
            {
                if let Some((0x04, octets)) = parts.last() {
                    if let Some((0x30, names, _)) = tlv(octets) {
                        for (t, name) in children(names) {
                            // [2] dNSName, [6] uniformResourceIdentifier
                            if t == 0x82 || t == 0x86 {
                                out.push(String::from_utf8_lossy(name).into_owned());
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Who sent a request: its certificate's names over TLS, `local` over the
/// (root-only) unix socket, `anonymous` over plain TCP.
pub fn identities<T>(req: &tonic::Request<T>) -> Vec<String> {
    if let Some(certs) = req.peer_certs() {
        if let Some(leaf) = certs.first() {
            let ids = cert_identities(leaf.as_ref());
            if !ids.is_empty() {
                return ids;
            }
        }
    }
    if req.remote_addr().is_none() {
        vec!["local".into()]
    } else {
        vec!["anonymous".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(
            tlv(&[0x04, 0x02, 1, 2, 9]),
            Some((0x04, &[1u8, 2][..], &[9u8][..]))
        );
        let long = [&[0x04, 0x81, 0x80][..], &[7u8; 0x80]].concat();
        assert_eq!(tlv(&long).unwrap().1.len(), 0x80);
        assert_eq!(tlv(&[0x04, 0x05, 1]), None);
        assert!(cert_identities(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_empty());
    }
}
