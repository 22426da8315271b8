//! The server side: read one HTTP request, then upgrade it to a WebSocket, refuse it with
//! a status, or answer it as plain HTTP (WebSocket shares its port with HTTP).

use crate::auth::{AuthHook, Denied};
use crate::error::{Error, Result};
use crate::metrics;
use crate::socket::{Config, WebSocket};
use bytes::{Bytes, BytesMut};
use proto::handshake::server::{http_response, HandshakeError, Limits, Request};
use proto::{DeflateConfig, Role};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Server settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Request head limits (`431` beyond them).
    pub limits: Limits,
    /// Time allowed for the client to send its whole request head.
    pub handshake_timeout: Duration,
    /// Subprotocols this server speaks, most preferred first.
    pub subprotocols: Vec<String>,
    /// Settings for accepted sockets.
    pub socket: Config,
    /// Checks every request before it is accepted (see [`crate::auth`]); `None` lets all
    /// through.
    pub auth: Option<AuthHook>,
    /// permessage-deflate (RFC 7692): accepted from clients that offer it when set. Off by
    /// default, as in Node's `ws`: each compressed connection keeps zlib state (up to about
    /// 300 KiB with 15-bit windows and context takeover) and spends CPU on every message.
    pub deflate: Option<DeflateConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            handshake_timeout: Duration::from_secs(10),
            subprotocols: Vec::new(),
            socket: Config::default(),
            deflate: None,
            auth: None,
        }
    }
}

/// A request read from a connection, not yet answered.
pub struct Incoming<S> {
    io: S,
    request: Request,
    leftover: BytesMut,
}

impl<S> std::fmt::Debug for Incoming<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("request", &self.request)
            .finish()
    }
}

/// Reads one request head, within the configured size and time limits. A malformed or
/// oversized head is answered (`400`/`431`) and the connection closed before this returns
/// the error.
pub async fn read_request<S>(mut io: S, config: &ServerConfig) -> Result<Incoming<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let limits = config.limits;
    let parsed = tokio::time::timeout(config.handshake_timeout, async {
        loop {
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(1024.min(limits.max_head_size + 1));
            }
            if io.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            match Request::parse(&buf, &limits) {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {}
                Err(e) => return Err(Error::Handshake(e)),
            }
        }
    })
    .await;
    match parsed {
        Ok(Ok((request, n))) => {
            let leftover = buf.split_off(n);
            Ok(Incoming {
                io,
                request,
                leftover,
            })
        }
        Ok(Err(Error::Handshake(e))) => {
            let _ = write_and_close(&mut io, &e.to_response()).await;
            Err(Error::Handshake(e))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::HandshakeTimeout),
    }
}

async fn write_and_close<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await?;
    io.shutdown().await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Incoming<S> {
    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request target, e.g. `/echo?x=1`.
    pub fn path(&self) -> &str {
        self.request.path()
    }

    /// Whether the client asks for a WebSocket upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.request.is_upgrade()
    }

    /// Runs [`ServerConfig::auth`] on the request; on a refusal, answers it (`401` with
    /// `WWW-Authenticate: Bearer`, or `403`) and closes the connection.
    pub async fn authenticate(self, config: &ServerConfig) -> Result<Self> {
        let Some(hook) = &config.auth else {
            return Ok(self);
        };
        match hook.check(&self.request) {
            Ok(()) => Ok(self),
            Err(denied) => {
                self.refuse(&denied).await?;
                Err(denied.into())
            }
        }
    }

    /// Answers a refusal of [`crate::auth`] and closes the connection.
    pub async fn refuse(self, denied: &Denied) -> Result<()> {
        let body = format!("{denied}\n");
        let challenge = [("WWW-Authenticate", r#"Bearer realm="wsduplex""#)];
        let headers: &[(&str, &str)] = if denied.status() == 401 {
            &challenge
        } else {
            &[]
        };
        self.respond(denied.status(), headers, "text/plain", body.as_bytes())
            .await
    }

    /// Validates the upgrade, selects a subprotocol by server preference, negotiates
    /// permessage-deflate if [`ServerConfig::deflate`] is set, and answers `101`.
    /// A request that breaks RFC 6455 §4.2.1 is answered with `400` or `426`, one that
    /// [`ServerConfig::auth`] refuses with its status.
    pub async fn accept(self, config: &ServerConfig) -> Result<WebSocket<S>> {
        let this = self
            .authenticate(config)
            .await
            .inspect_err(|_| metrics::handshake(false))?;
        this.accept_authenticated(config).await
    }

    async fn accept_authenticated(self, config: &ServerConfig) -> Result<WebSocket<S>> {
        let supported: Vec<&str> = config.subprotocols.iter().map(String::as_str).collect();
        let subprotocol = self.request.select_subprotocol(&supported);
        let mut socket = config.socket.clone();
        if let Some(policy) = &config.deflate {
            let agreed = self.request.negotiate_deflate(policy);
            socket.protocol = socket.protocol.deflate(agreed, policy);
        }
        self.accept_with(subprotocol, &[], socket).await
    }

    /// Answers `101` with the given subprotocol (one the client offered) and extra headers.
    /// `config.protocol.deflate`, if set, is the permessage-deflate agreement to answer with:
    /// set it from [`Request::negotiate_deflate`] (what the client offered), never otherwise.
    pub async fn accept_with(
        mut self,
        subprotocol: Option<&str>,
        headers: &[(&str, &str)],
        config: Config,
    ) -> Result<WebSocket<S>> {
        let subprotocol = subprotocol.filter(|p| self.request.subprotocols().any(|o| o == *p));
        let deflate = config.protocol.deflate.as_ref();
        let response = match self
            .request
            .accept_response_with(subprotocol, deflate, headers)
        {
            Ok(r) => r,
            Err(e) => {
                metrics::handshake(false);
                let _ = write_and_close(&mut self.io, &e.to_response()).await;
                return Err(e.into());
            }
        };
        self.io
            .write_all(&response)
            .await
            .inspect_err(|_| metrics::handshake(false))?;
        metrics::handshake(true);
        let ws = WebSocket::from_raw(self.io, Role::Server, config, &self.leftover);
        Ok(ws.with_subprotocol(subprotocol.map(str::to_string)))
    }

    /// Reads the request body (for the plain HTTP requests that share the port: a `POST`
    /// to an API, say), at most `max` bytes, within `timeout`. Only `Content-Length` bodies
    /// are accepted: a chunked body is refused (`411`), like a body over `max` (`413`);
    /// answer the error with [`BodyError::status`]. No `Content-Length` means no body.
    pub async fn read_body(&mut self, max: usize, timeout: Duration) -> Result<Bytes> {
        if self.request.header("transfer-encoding").is_some() {
            return Err(BodyError::LengthRequired.into());
        }
        let length = match self.request.header("content-length") {
            None => return Ok(Bytes::new()),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(BodyError::BadLength)?,
        };
        if length > max {
            return Err(BodyError::TooLarge { length, max }.into());
        }
        let mut body = std::mem::take(&mut self.leftover);
        body.reserve(length.saturating_sub(body.len()));
        let read = tokio::time::timeout(timeout, async {
            while body.len() < length {
                if self.io.read_buf(&mut body).await? == 0 {
                    return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Ok(())
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(BodyError::Timeout.into()),
        }
        // Anything after the body would be a pipelined request: not served (the connection
        // closes after the response).
        body.truncate(length);
        Ok(body.freeze())
    }

    /// Refuses the upgrade with `err`'s status and reason, and closes the connection.
    pub async fn reject(mut self, err: HandshakeError) -> Result<()> {
        write_and_close(&mut self.io, &err.to_response()).await?;
        Ok(())
    }

    /// Answers with a plain HTTP response and closes the connection.
    pub async fn respond(
        mut self,
        status: u16,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> Result<()> {
        let bytes = if self.request.method() == "HEAD" {
            let mut r = http_response(status, headers, content_type, body);
            r.truncate(r.len() - body.len());
            r
        } else {
            http_response(status, headers, content_type, body)
        };
        write_and_close(&mut self.io, &bytes).await?;
        Ok(())
    }
}

/// Why a request body was refused (see [`Incoming::read_body`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// `Transfer-Encoding` instead of `Content-Length`: `411`.
    #[error("a body needs a content-length")]
    LengthRequired,
    /// `Content-Length` is not a number: `400`.
    #[error("invalid content-length")]
    BadLength,
    /// The body is larger than allowed: `413`.
    #[error("body of {length} bytes is over the limit of {max}")]
    TooLarge {
        /// Announced length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The body did not arrive in time: `408`.
    #[error("body not received in time")]
    Timeout,
}

impl BodyError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::LengthRequired => 411,
            Self::BadLength => 400,
            Self::TooLarge { .. } => 413,
            Self::Timeout => 408,
        }
    }
}

/// Accepts a WebSocket on `io` with default settings, whatever the path.
pub async fn accept<S>(io: S) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with_config(io, &ServerConfig::default()).await
}

/// Accepts a WebSocket on `io` with `config`, whatever the path.
pub async fn accept_with_config<S>(io: S, config: &ServerConfig) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    read_request(io, config).await?.accept(config).await
}
