//! Certificates made in the test: a CA, a server certificate for 127.0.0.1, client
//! certificates (valid, from another CA, expired) and replication sites' certificates, written
//! as PEM files.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert: PathBuf,
}

/// A certificate and its key, as PEM files.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            cert: path,
        }
    }

    /// The server's certificate: 127.0.0.1 and localhost.
    pub fn server(&self, dir: &Path) -> Pair {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(dir, "server", params)
    }

    /// A client certificate whose subject common name is `name`.
    pub fn client(&self, dir: &Path, name: &str) -> Pair {
        self.issue(dir, name, client_params(name))
    }

    /// A client certificate whose validity ended in 2021.
    pub fn expired_client(&self, dir: &Path, name: &str) -> Pair {
        let mut params = client_params(name);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.issue(dir, &format!("{name}-expired"), params)
    }

    /// A replication site's certificate, presented both as server and as client. Its DNS
    /// name, `<name>.keyward.test`, is the identity peers configure for it: they check it
    /// as the server name when connecting, and on the client certificate when called. The CN
    /// (`name`) differs on purpose, so a site that read the CN would not recognise its peer.
    pub fn site(&self, dir: &Path, name: &str) -> Pair {
        let mut params = CertificateParams::new(vec![format!("{name}.keyward.test")]).unwrap();
        // Every site listens on 127.0.0.1: an address check alone would take any for any.
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(dir, name, params)
    }

    fn issue(&self, dir: &Path, file: &str, params: CertificateParams) -> Pair {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let pair = Pair {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }
}

fn client_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}
