//! What [`connect`](super::connect) accepts: a URL, or an `http::Request<()>` with its own
//! headers and subprotocols.

use super::Target;
use crate::error::{Error, Result};
use proto::handshake::client::RequestError;

/// A WebSocket URL with what to ask the server for, beyond [`ClientConfig`]'s settings.
///
/// [`ClientConfig`]: super::ClientConfig
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// Where to connect, and the `Host` header.
    pub target: Target,
    /// The `Origin` header, in place of [`ClientConfig::origin`](super::ClientConfig::origin).
    pub origin: Option<String>,
    /// Subprotocols to offer, in place of
    /// [`ClientConfig::subprotocols`](super::ClientConfig::subprotocols) when `Some`.
    pub subprotocols: Option<Vec<String>>,
    /// Headers sent after [`ClientConfig::headers`](super::ClientConfig::headers).
    pub headers: Vec<(String, String)>,
}

impl From<Target> for ClientRequest {
    fn from(target: Target) -> Self {
        Self {
            target,
            origin: None,
            subprotocols: None,
            headers: Vec::new(),
        }
    }
}

/// What [`connect`](super::connect) and [`connect_with`](super::connect_with) accept: a
/// `ws://` or `wss://` URL (`&str`, `String`, [`url::Url`], [`http::Uri`]), or an
/// [`http::Request<()>`] whose URI is one.
///
/// From an `http::Request`: `Host` (if set) replaces the URL's, `Origin` replaces
/// [`ClientConfig::origin`](super::ClientConfig::origin), `Sec-WebSocket-Protocol` lists
/// the subprotocols to offer (in place of the config's), and every other header is sent
/// as given. The headers the handshake owns are set by it: `Upgrade`, `Connection` and
/// `Sec-WebSocket-Version` may be given only with the values it sends (`websocket`, a
/// list with `upgrade`, `13`); `Sec-WebSocket-Key` (chosen at random for each request)
/// and `Sec-WebSocket-Extensions` (see [`ClientConfig::deflate`](super::ClientConfig::deflate))
/// not at all. Anything else is [`RequestError::HandshakeHeader`]; a method other than
/// `GET` or a version other than HTTP/1.1 is refused too.
pub trait IntoClientRequest {
    /// The URL and headers, checked.
    fn into_client_request(self) -> Result<ClientRequest>;
}

impl IntoClientRequest for ClientRequest {
    fn into_client_request(self) -> Result<ClientRequest> {
        Ok(self)
    }
}

impl IntoClientRequest for &str {
    fn into_client_request(self) -> Result<ClientRequest> {
        Target::parse(self).map(ClientRequest::from)
    }
}

impl IntoClientRequest for &String {
    fn into_client_request(self) -> Result<ClientRequest> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for String {
    fn into_client_request(self) -> Result<ClientRequest> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for &url::Url {
    fn into_client_request(self) -> Result<ClientRequest> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for url::Url {
    fn into_client_request(self) -> Result<ClientRequest> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for &http::Uri {
    fn into_client_request(self) -> Result<ClientRequest> {
        self.to_string().into_client_request()
    }
}

impl IntoClientRequest for http::Uri {
    fn into_client_request(self) -> Result<ClientRequest> {
        (&self).into_client_request()
    }
}

impl IntoClientRequest for http::Request<()> {
    fn into_client_request(self) -> Result<ClientRequest> {
        if self.method() != http::Method::GET {
            return Err(RequestError::Method(self.method().to_string()).into());
        }
        if self.version() != http::Version::HTTP_11 {
            return Err(RequestError::Version(format!("{:?}", self.version())).into());
        }
        let mut request = self.uri().into_client_request()?;
        let mut subprotocols: Option<Vec<String>> = None;
        for (name, value) in self.headers() {
            let text = value
                .to_str()
                .map_err(|_| RequestError::InvalidHeader(format!("{name}: {value:?}")))?;
            let owned = |ok: bool| -> Result<()> {
                if ok {
                    Ok(())
                } else {
                    Err(Error::Request(RequestError::HandshakeHeader {
                        name: name.to_string(),
                        value: text.to_string(),
                    }))
                }
            };
            match name {
                &http::header::UPGRADE => owned(text.trim().eq_ignore_ascii_case("websocket"))?,
                &http::header::CONNECTION => owned(
                    text.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade")),
                )?,
                &http::header::SEC_WEBSOCKET_VERSION => owned(text.trim() == "13")?,
                &http::header::SEC_WEBSOCKET_KEY | &http::header::SEC_WEBSOCKET_EXTENSIONS => {
                    owned(false)?
                }
                &http::header::HOST => request.target.host_header = text.trim().to_string(),
                &http::header::ORIGIN => request.origin = Some(text.to_string()),
                &http::header::SEC_WEBSOCKET_PROTOCOL => {
                    subprotocols.get_or_insert_default().extend(
                        text.split(',')
                            .map(str::trim)
                            .filter(|p| !p.is_empty())
                            .map(str::to_string),
                    )
                }
                _ => request.headers.push((name.to_string(), text.to_string())),
            }
        }
        request.subprotocols = subprotocols;
        Ok(request)
    }
}
