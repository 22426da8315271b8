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
//! With sentinels, connecting follows the Sentinel client protocol: ask each sentinel in
//! turn (the one that answers goes first next time), check with `ROLE` that the server
//! named is a master, and stay subscribed to that sentinel's `+switch-master`: a failover
//! ends the session at once (the old master may take seconds to be demoted, and writes
//! it accepts meanwhile are lost).

use super::scripts::Failure;
use ::redis::aio::PubSubStream;
use ::redis::{Client, ClientTlsConfig, Msg, RedisError, TlsCertificates, Value};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::timeout;

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
struct TlsFiles {
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

    fn client(&self, url: &str) -> Result<Client, RedisError> {
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

pub(crate) struct Sentinels {
    /// The master's name in the sentinels' configuration.
    master: String,
    /// `(address for logs, client)`; the last one that answered goes first.
    sentinels: Mutex<Vec<(String, Client)>>,
    /// The master's URL before and after its `host:port`.
    master_url: (String, String),
    tls: TlsFiles,
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

    /// The server to connect to now.
    pub(crate) async fn resolve(&self, t: Duration) -> Result<Resolved, Failure> {
        match self {
            Self::Direct(client) => Ok(Resolved {
                client: client.clone(),
                master: None,
            }),
            Self::Sentinel(s) => s.find(t).await,
        }
    }

    /// Watches for failovers again after the sentinel watched went away; `Err` if the
    /// master moved meanwhile. Without a sentinel that answers, stays unwatched.
    pub(crate) async fn rewatch(&self, master: &mut Master, t: Duration) -> Result<(), Failure> {
        let Self::Sentinel(s) = self else {
            return Ok(());
        };
        for (_, client) in s.order() {
            if let Ok((Some((host, port)), switches)) = s.consult(&client, t).await {
                let now = address(&host, port);
                if now != master.addr {
                    return Err(Failure::Switched {
                        master: master.name.clone(),
                        to: now,
                    });
                }
                master.switches = Some(switches);
                return Ok(());
            }
        }
        Ok(())
    }
}

/// What to connect to.
pub(crate) struct Resolved {
    pub(crate) client: Client,
    /// With sentinels: the master they named.
    pub(crate) master: Option<Master>,
}

/// The master sentinels named: `ROLE` must say `master` there.
pub(crate) struct Master {
    pub(crate) name: String,
    /// `host:port`.
    pub(crate) addr: String,
    /// `+switch-master` from the sentinel that named it; `None` once that sentinel is gone.
    pub(crate) switches: Option<PubSubStream>,
}

impl Master {
    /// Completes when sentinels move this master elsewhere (`Ok(where)`), or when the
    /// sentinel watched goes away. Never completes while unwatched.
    pub(crate) async fn switched(&mut self) -> Result<String, SentinelGone> {
        let Some(switches) = self.switches.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            let Some(msg) = switches.next().await else {
                self.switches = None;
                return Err(SentinelGone);
            };
            if let Some(to) = switch_of(&msg, &self.name) {
                if to != self.addr {
                    return Ok(to);
                }
            }
        }
    }
}

/// The sentinel watched for failovers closed its connection.
pub(crate) struct SentinelGone;

/// `+switch-master` says `<name> <old ip> <old port> <new ip> <new port>`.
fn switch_of(msg: &Msg, name: &str) -> Option<String> {
    let payload = std::str::from_utf8(msg.get_payload_bytes()).ok()?;
    match payload.split(' ').collect::<Vec<_>>().as_slice() {
        [n, _, _, host, port] if *n == name => Some(address(host, port.parse().ok()?)),
        _ => None,
    }
}

fn address(host: &str, port: u16) -> String {
    match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
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

impl Sentinels {
    fn master_client(&self, host: &str, port: u16) -> Result<Client, RedisError> {
        let (before, after) = &self.master_url;
        self.tls
            .client(&format!("{before}{}{after}", address(host, port)))
    }

    /// The sentinels, the last one that answered first.
    fn order(&self) -> Vec<(String, Client)> {
        self.sentinels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks each sentinel in turn where the master is; the first that knows wins and is
    /// asked first next time.
    async fn find(&self, t: Duration) -> Result<Resolved, Failure> {
        let mut said = Vec::new();
        for (i, (addr, client)) in self.order().into_iter().enumerate() {
            match self.consult(&client, t).await {
                Ok((Some((host, port)), switches)) => {
                    if i > 0 {
                        let mut order = self.sentinels.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(j) = order.iter().position(|(a, _)| *a == addr) {
                            let first = order.remove(j);
                            order.insert(0, first);
                        }
                    }
                    return Ok(Resolved {
                        client: self.master_client(&host, port)?,
                        master: Some(Master {
                            name: self.master.clone(),
                            addr: address(&host, port),
                            switches: Some(switches),
                        }),
                    });
                }
                Ok((None, _)) => said.push(format!("{addr}: unknown master")),
                Err(e) => said.push(format!("{addr}: {e}")),
            }
        }
        Err(Failure::NoMaster {
            master: self.master.clone(),
            said: said.join("; "),
        })
    }

    /// Subscribes to a sentinel's `+switch-master` first (so no failover after the answer
    /// goes unseen), then asks it where the master is.
    async fn consult(
        &self,
        client: &Client,
        t: Duration,
    ) -> Result<(Option<(String, u16)>, PubSubStream), Failure> {
        let mut pubsub = timeout(t, client.get_async_pubsub())
            .await
            .map_err(|_| Failure::Timeout(t))??;
        timeout(t, pubsub.subscribe("+switch-master"))
            .await
            .map_err(|_| Failure::Timeout(t))??;
        let master = self.ask(client, t).await?;
        Ok((master, pubsub.into_on_message()))
    }

    async fn ask(&self, client: &Client, t: Duration) -> Result<Option<(String, u16)>, Failure> {
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t));
        let asked = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            ::redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.master)
                .query_async::<Value>(&mut conn)
                .await
        };
        let v = timeout(t * 2, asked)
            .await
            .map_err(|_| Failure::Timeout(t))??;
        let reply = Failure::Reply("SENTINEL get-master-addr-by-name");
        match v {
            Value::Nil => Ok(None),
            Value::Array(items) => match items.as_slice() {
                [host, port] => {
                    let host = text(host).ok_or(reply)?;
                    let port = text(port).and_then(|p| p.parse().ok());
                    Ok(Some((host, port.ok_or(Failure::Reply("sentinel port"))?)))
                }
                _ => Err(reply),
            },
            _ => Err(reply),
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The role a server reports (`master`, `slave`, `sentinel`).
pub(crate) async fn role(
    conn: &mut ::redis::aio::MultiplexedConnection,
) -> Result<String, Failure> {
    let v: Value = ::redis::cmd("ROLE").query_async(conn).await?;
    match &v {
        Value::Array(items) => items.first().and_then(text),
        _ => None,
    }
    .ok_or(Failure::Reply("ROLE"))
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

    #[test]
    fn switches() {
        let msg = |payload: &str| {
            let v = Value::Array(vec![
                Value::BulkString(b"message".to_vec()),
                Value::BulkString(b"+switch-master".to_vec()),
                Value::BulkString(payload.as_bytes().to_vec()),
            ]);
            Msg::from_owned_value(v).unwrap()
        };
        assert_eq!(
            switch_of(&msg("mymaster 10.0.0.1 6379 10.0.0.2 6380"), "mymaster"),
            Some("10.0.0.2:6380".into())
        );
        assert_eq!(
            switch_of(&msg("mymaster ::1 6379 ::2 6380"), "mymaster"),
            Some("[::2]:6380".into())
        );
        assert_eq!(switch_of(&msg("other 1 2 3 4"), "mymaster"), None);
        assert_eq!(switch_of(&msg("mymaster 1 2 3"), "mymaster"), None);
    }
}
