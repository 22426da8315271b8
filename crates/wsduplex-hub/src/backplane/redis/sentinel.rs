//! The Sentinel client protocol, for `redis+sentinel://` URLs (parsed in `url.rs`): ask
//! each sentinel in turn (the one that answers goes first next time), check with `ROLE`
//! that the server named is a master, and stay subscribed to that sentinel's
//! `+switch-master`: a failover ends the connection at once (the old master may take seconds
//! to be demoted, and writes it accepts meanwhile are lost).

use super::scripts::{text, Failure};
use super::url::{Endpoint, TlsFiles};
use ::redis::aio::PubSubStream;
use ::redis::{Client, Msg, RedisError, Value};
use futures_util::StreamExt;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::timeout;

pub(crate) struct Sentinels {
    /// The master's name in the sentinels' configuration.
    pub(super) master: String,
    /// `(address for logs, client)`; the last one that answered goes first.
    pub(super) sentinels: Mutex<Vec<(String, Client)>>,
    /// The master's URL before and after its `host:port`.
    pub(super) master_url: (String, String),
    pub(super) tls: TlsFiles,
}

impl Endpoint {
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

/// `host:port`, IPv6 in brackets.
pub(super) fn address(host: &str, port: u16) -> String {
    match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

impl Sentinels {
    pub(super) fn master_client(&self, host: &str, port: u16) -> Result<Client, RedisError> {
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
