//! Finger over TLS, as Zuul's finger gateway and executors offer it: a certificate, its key and
//! a CA (Zuul's `tls_cert`, `tls_key`, `tls_ca`). A server with them speaks only TLS and accepts
//! only clients holding a certificate signed by the CA; a client (a gateway or the web towards
//! executors and other zones' gateways) presents its certificate and checks the server's against
//! the CA and, unless `verify_hostnames` is off, against the host name or address it dialled.
//! `client_only` (Zuul's `tls_client_only`): a gateway speaks TLS to its upstreams and plaintext
//! to its own clients.
//!
//! [`FingerStream`] is a connection either way, so the finger code above it does not care.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::errors::StreamError;

/// The files and switches of one process's finger TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// This side's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs every finger certificate (PEM).
    pub ca: PathBuf,
    /// Check that a server's certificate names the host dialled (Zuul's default: true).
    pub verify_hostnames: bool,
}

/// A server's TLS: clients must present a certificate signed by the CA.
#[derive(Clone)]
pub struct ServerTls(tokio_rustls::TlsAcceptor);

/// A client's TLS towards executors and gateways.
#[derive(Clone)]
pub struct ClientTls(tokio_rustls::TlsConnector);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

fn provider() -> Arc<CryptoProvider> {
    // Named explicitly: more than one provider is compiled into the binary.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(path: &Path, what: &str, detail: impl std::fmt::Display) -> StreamError {
    StreamError::Tls {
        path: path.to_path_buf(),
        detail: format!("{what}: {detail}"),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, StreamError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, "cannot read certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, "invalid PEM certificate", e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate", "the file holds none"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, StreamError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_error(path, "cannot read a private key", e))
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, StreamError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| tls_error(path, "invalid CA certificate", e))?;
    }
    Ok(Arc::new(roots))
}

impl ServerTls {
    /// Loads the server side: the certificate and key, clients verified against the CA.
    pub fn load(settings: &TlsSettings) -> Result<Self, StreamError> {
        let roots = load_roots(&settings.ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| tls_error(&settings.ca, "cannot verify clients with this CA", e))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&settings.cert, "TLS versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(load_certs(&settings.cert)?, load_key(&settings.key)?)
            .map_err(|e| tls_error(&settings.key, "certificate and key do not match", e))?;
        Ok(Self(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    /// The TLS handshake of an accepted connection.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<FingerStream> {
        let tls = self.0.accept(stream).await?;
        Ok(FingerStream::Tls(Box::new(tls.into())))
    }
}

impl ClientTls {
    /// Loads the client side: this side's certificate, servers verified against the CA.
    pub fn load(settings: &TlsSettings) -> Result<Self, StreamError> {
        let roots = load_roots(&settings.ca)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| tls_error(&settings.ca, "cannot verify servers with this CA", e))?;
        let verifier: Arc<dyn ServerCertVerifier> = if settings.verify_hostnames {
            webpki
        } else {
            Arc::new(AnyName(webpki))
        };
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&settings.cert, "TLS versions", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(load_certs(&settings.cert)?, load_key(&settings.key)?)
            .map_err(|e| tls_error(&settings.key, "certificate and key do not match", e))?;
        Ok(Self(tokio_rustls::TlsConnector::from(Arc::new(config))))
    }

    /// The TLS handshake towards `host` (a name or an address, checked against the
    /// certificate's names unless `verify_hostnames` is off).
    pub async fn connect(&self, host: &str, stream: TcpStream) -> io::Result<FingerStream> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("host {host:?}: {e}"))
        })?;
        let tls = self.0.connect(name, stream).await?;
        Ok(FingerStream::Tls(Box::new(tls.into())))
    }
}

/// The CA's verification without the name check (`verify_hostnames: false`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A finger connection, plain or TLS.
#[derive(Debug)]
pub enum FingerStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (either side of it).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl AsyncRead for FingerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            FingerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            FingerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for FingerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            FingerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            FingerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            FingerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            FingerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            FingerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            FingerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            FingerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            FingerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            FingerStream::Plain(s) => s.is_write_vectored(),
            FingerStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
