//! Where the backplane's Redis is: the URL of [`crate::RedisConfig::url`], parsed once, at
//! start (a bad URL, or a certificate file that cannot be read, fails then, not at the
//! first connect).
//!
//! - `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`: one server (`redis+unix:///PATH`, and
//!   `valkey://` for each `redis://`, as the redis crate reads them).
//! - `rediss://...`: the same over TLS (rustls with *ring*). The server's certificate is
//!   checked against the system's roots, or against `?cacert=PATH` (a PEM file) alone
//!   when given; `cert=PATH&key=PATH` add a client certificate (Redis
//!   `tls-auth-clients yes`). The names are `redis-cli`'s options.
//! - `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]`: the
//!   master that these sentinels (port 26379 by default) know as `MASTER`, found again
//!   at every connect; `rediss+sentinel://` speaks TLS to the sentinels and the master,
//!   with the options above. Credentials and `DB` are the master's; sentinels are asked
//!   without credentials.
//!
//! Connecting through sentinels is `sentinel.rs`.

use super::sentinel::Sentinels;
use ::redis::{Client, ClientTlsConfig, RedisError, TlsCertificates};
use std::path::PathBuf;
use std::sync::Mutex;

const SENTINEL_PORT: u16 = 26379;

/// Why a URL was refused (the source of [`crate::InvalidRedisUrl`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UrlError {
    #[error(
        "expected redis://, rediss://, redis+sentinel://, rediss+sentinel:// or redis+unix://"
    )]
    Scheme,
    #[error("{0} needs TLS: use rediss:// (or rediss+sentinel://)")]
    NeedsTls(&'static str),
    #[error("cert and key go together")]
    Unpaired,
    #[error("#insecure is not supported: trust the server's CA with ?cacert=PATH")]
    Fragment,
    #[error("no sentinel address")]
    NoSentinel,
    #[error("bad sentinel address {0:?}")]
    BadSentinel(String),
    #[error("no master name: redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]")]
    NoMaster,
    #[error("bad database number {0:?}")]
    BadDb(String),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// The certificate files a TLS URL names, read.
#[derive(Clone, Default)]
pub(super) struct TlsFiles {
    /// `None`: the system's roots.
    ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// Takes `cacert`, `cert` and `key` out of `query`; `tls`: whether the scheme is.
    fn take(query: &mut Vec<(String, String)>, tls: bool) -> Result<Self, UrlError> {
        let mut take = |name: &'static str| -> Result<Option<PathBuf>, UrlError> {
            let Some(i) = query.iter().position(|(k, _)| k == name) else {
                return Ok(None);
            };
            let (_, path) = query.remove(i);
            match tls {
                true => Ok(Some(path.into())),
                false => Err(UrlError::NeedsTls(name)),
            }
        };
        let (ca, cert, key) = (take("cacert")?, take("cert")?, take("key")?);
        let read =
            |path: PathBuf| std::fs::read(&path).map_err(|source| UrlError::Read { path, source });
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) => None,
            _ => return Err(UrlError::Unpaired),
        };
        Ok(Self {
            ca: ca.map(read).transpose()?,
            client,
        })
    }

    pub(super) fn client(&self, url: &str) -> Result<Client, RedisError> {
        if self.ca.is_none() && self.client.is_none() {
            return Client::open(url);
        }
        let certs = TlsCertificates {
            client_tls: self
                .client
                .clone()
                .map(|(client_cert, client_key)| ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: self.ca.clone(),
        };
        Client::build_with_tls(url, certs)
    }
}

/// A URL split where the redis crate's parser cannot help (several hosts).
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    path: &'a str,
    /// As written, without the `?`.
    raw_query: &'a str,
    query: Vec<(String, String)>,
    fragment: Option<&'a str>,
}

fn split(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    Some(Parts {
        scheme,
        userinfo,
        hosts,
        path,
        raw_query: query,
        query: url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        fragment,
    })
}

fn join_query(query: &[(String, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut out = url::form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
    out.extend_pairs(query);
    out.finish()
}

/// The URL for logs: without its password, nor the value of a `pass` parameter.
pub(crate) fn redacted(url: &str) -> String {
    let Some(parts) = split(url) else {
        return "(unparsable URL)".into();
    };
    let mut out = format!("{}://", parts.scheme);
    if let Some(userinfo) = parts.userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{userinfo}@")),
        }
    }
    out.push_str(parts.hosts);
    out.push_str(parts.path);
    if !parts.raw_query.is_empty() {
        let query: Vec<String> = parts
            .raw_query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k @ ("pass" | "password"), _)) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&query.join("&"));
    }
    if let Some(f) = parts.fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// One server, or the master sentinels point to.
pub(crate) enum Endpoint {
    Direct(Client),
    Sentinel(Sentinels),
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Self, UrlError> {
        let parts = split(url).ok_or(UrlError::Scheme)?;
        let (tls, sentinel) = match parts.scheme {
            "redis" | "valkey" => (false, false),
            "rediss" | "valkeys" => (true, false),
            "redis+sentinel" => (false, true),
            "rediss+sentinel" => (true, true),
            // A Unix socket: the redis crate's URL as it is.
            "redis+unix" | "valkey+unix" | "unix" => return Ok(Self::Direct(Client::open(url)?)),
            _ => return Err(UrlError::Scheme),
        };
        if parts.fragment.is_some() {
            return Err(UrlError::Fragment);
        }
        if tls {
            // The redis crate builds its rustls configs with the process's default
            // provider; make it ring unless the application chose one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut query = parts.query;
        let files = TlsFiles::take(&mut query, tls)?;
        let userinfo = parts.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        if !sentinel {
            let url = format!(
                "{}://{userinfo}{}{}{}",
                parts.scheme,
                parts.hosts,
                parts.path,
                join_query(&query)
            );
            return Ok(Self::Direct(files.client(&url)?));
        }
        let scheme = if tls { "rediss" } else { "redis" };
        let mut path = parts.path.trim_start_matches('/').splitn(2, '/');
        let master = path.next().unwrap_or_default();
        if master.is_empty() {
            return Err(UrlError::NoMaster);
        }
        let master = percent_encoding::percent_decode_str(master)
            .decode_utf8_lossy()
            .into_owned();
        let db = match path.next().unwrap_or_default() {
            "" => String::new(),
            db if db.parse::<u32>().is_ok() => format!("/{db}"),
            db => return Err(UrlError::BadDb(db.into())),
        };
        let master_url = (
            format!("{scheme}://{userinfo}"),
            format!("{db}{}", join_query(&query)),
        );
        let mut sentinels = Vec::new();
        for host in parts.hosts.split(',') {
            let addr = with_port(host)?;
            let client = files.client(&format!("{scheme}://{addr}"))?;
            sentinels.push((addr, client));
        }
        if sentinels.is_empty() {
            return Err(UrlError::NoSentinel);
        }
        let this = Sentinels {
            master,
            sentinels: Mutex::new(sentinels),
            master_url,
            tls: files,
        };
        // Credentials and options are checked now, not at the first failover.
        this.master_client("127.0.0.1", 6379)?;
        Ok(Self::Sentinel(this))
    }
}

/// `host[:port]` with the sentinel port by default; IPv6 in brackets.
fn with_port(host: &str) -> Result<String, UrlError> {
    let bad = || UrlError::BadSentinel(host.into());
    if host.is_empty() {
        return Err(UrlError::NoSentinel);
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => (name, Some(port)),
        _ => (host, None),
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => SENTINEL_PORT,
    };
    if name.is_empty() || name.contains('/') {
        return Err(bad());
    }
    Ok(format!("{name}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_never_show_the_password() {
        assert_eq!(
            redacted("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redacted("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(
            redacted("redis+sentinel://u:hunter2@a:1,b:2/mymaster?cacert=/ca.pem"),
            "redis+sentinel://u:***@a:1,b:2/mymaster?cacert=/ca.pem"
        );
        assert_eq!(
            redacted("redis+unix:///run/redis.sock?pass=hunter2"),
            "redis+unix:///run/redis.sock?pass=***"
        );
    }

    #[test]
    fn urls() {
        assert!(matches!(
            Endpoint::parse("redis://127.0.0.1:6379/2"),
            Ok(Endpoint::Direct(_))
        ));
        assert!(matches!(
            Endpoint::parse("rediss://127.0.0.1:6380"),
            Ok(Endpoint::Direct(_))
        ));
        assert!(matches!(
            Endpoint::parse("redis+unix:///run/redis.sock?db=1"),
            Ok(Endpoint::Direct(_))
        ));
        let refused = |url: &str| match Endpoint::parse(url) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} accepted"),
        };
        assert!(refused("http://x").contains("expected redis://"));
        assert!(refused("redis://x?cacert=/ca.pem").contains("rediss://"));
        assert!(refused("rediss://x#insecure").contains("cacert"));
        assert!(refused("rediss://x?cert=/c.pem").contains("together"));
        assert!(refused("rediss://x?cacert=/nonexistent/ca.pem").contains("cannot read"));
        assert!(refused("redis+sentinel://a:1").contains("master name"));
        assert!(refused("redis+sentinel://a:x/m").contains("sentinel address"));
        assert!(refused("redis+sentinel://a,,b/m").contains("no sentinel"));
        assert!(refused("redis+sentinel://a/m/x").contains("database"));
        let Ok(Endpoint::Sentinel(s)) =
            Endpoint::parse("redis+sentinel://:pw@a,b:1,[::1]:2/my%20master/3?protocol=resp3")
        else {
            panic!("not a sentinel URL");
        };
        assert_eq!(s.master, "my master");
        let addrs: Vec<String> = s
            .sentinels
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .collect();
        assert_eq!(addrs, ["a:26379", "b:1", "[::1]:2"]);
        let (before, after) = &s.master_url;
        assert_eq!((&**before, &**after), ("redis://:pw@", "/3?protocol=resp3"));
        assert!(s.master_client("::1", 7).is_ok());
    }
}
