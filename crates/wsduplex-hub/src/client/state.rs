//! What the hub client remembers across connections: the rooms it follows and the last id
//! it handed out in each, the token, which server to try. It makes each connection's
//! request and resubscriptions, and filters what comes back (no duplicates).

use super::events::{HubEvent, Wire};
use serde_json::json;
use wsduplex::http;

/// A room the client follows.
#[derive(Debug)]
struct Sub {
    room: String,
    /// The newest id handed out (or asked for with `since`); `None`: nothing yet.
    last: Option<u64>,
    /// A welcome came for it (so the next one is a resume).
    welcomed: bool,
}

#[derive(Debug)]
pub(super) struct State {
    /// The hub's base URLs: the first, then the others after failed attempts.
    urls: Vec<String>,
    name: Option<String>,
    token: Option<String>,
    /// A token sent in a `refresh` and not yet answered.
    pending_token: Option<String>,
    /// The room a connection opens with when the client follows none.
    home: String,
    subs: Vec<Sub>,
    /// The room the current connection's URL joined (resubscribing skips it).
    url_room: Option<String>,
    /// A room joined only because a WebSocket URL needs one: unsubscribed at once, its
    /// events dropped.
    hidden: Option<String>,
}

impl State {
    pub(super) fn new(
        urls: Vec<String>,
        name: Option<String>,
        token: Option<String>,
        room: String,
        since: Option<u64>,
    ) -> Self {
        Self {
            urls,
            name,
            token,
            pending_token: None,
            home: room.clone(),
            subs: vec![Sub {
                room,
                last: since,
                welcomed: false,
            }],
            url_room: None,
            hidden: None,
        }
    }

    /// The URL of an attempt after `failures` consecutive failures: `/chat/ROOM` under the
    /// next base URL, with the first followed room and its `since`.
    pub(super) fn url(&mut self, failures: u32) -> String {
        let base = &self.urls[failures as usize % self.urls.len()];
        let (room, since) = match self.subs.first() {
            Some(sub) => (sub.room.clone(), sub.last),
            None => {
                self.hidden = Some(self.home.clone());
                (self.home.clone(), None)
            }
        };
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(name) = &self.name {
            query.append_pair("name", name);
        }
        if let Some(since) = since {
            query.append_pair("since", &since.to_string());
        }
        let query = query.finish();
        let url = format!("{}/chat/{room}", base.trim_end_matches('/'));
        self.url_room = Some(room);
        match query.is_empty() {
            true => url,
            false => format!("{url}?{query}"),
        }
    }

    /// The request of an attempt: [`Self::url`], and the token as `Authorization: Bearer`
    /// (kept out of the URL, which logs show): the last one given to `refresh` unless the
    /// hub refused it.
    pub(super) fn request(&mut self, failures: u32) -> http::Request<()> {
        // A refresh the lost connection never answered: its token is the newer.
        if let Some(token) = self.pending_token.take() {
            self.token = Some(token);
        }
        let mut request = http::Request::get(self.url(failures));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        // The URLs were checked when the client was made; a token that is no header value
        // fails the attempt with a clear error rather than being dropped.
        request.body(()).unwrap_or_default()
    }

    /// What a new connection sends first: every followed room but the URL's, with its
    /// `since`, and the unsubscribe of a hidden room.
    pub(super) fn resubscribe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .subs
            .iter()
            .filter(|s| Some(&s.room) != self.url_room.as_ref())
            .map(|s| subscribe_message(&s.room, s.last))
            .collect();
        if let Some(room) = &self.hidden {
            out.push(json!({"type": "unsubscribe", "room": room}).to_string());
        }
        out
    }

    /// Follows `room` from now on (and after reconnects); `false` if it already did.
    pub(super) fn follow(&mut self, room: &str, since: Option<u64>) -> bool {
        if self.sub(room).is_some() {
            return false;
        }
        self.subs.push(Sub {
            room: room.to_string(),
            last: since,
            welcomed: false,
        });
        true
    }

    /// Stops following `room` (a reconnect no longer subscribes to it).
    pub(super) fn forget(&mut self, room: &str) {
        self.subs.retain(|s| s.room != room);
    }

    /// The rooms followed, with the last id handed out in each.
    pub(super) fn rooms(&self) -> Vec<(String, Option<u64>)> {
        self.subs.iter().map(|s| (s.room.clone(), s.last)).collect()
    }

    /// A token for the next connections; sent in a `refresh` if `connected`.
    pub(super) fn set_token(&mut self, token: String, connected: bool) {
        match connected {
            true => self.pending_token = Some(token),
            false => self.token = Some(token),
        }
    }

    fn sub(&mut self, room: &str) -> Option<&mut Sub> {
        self.subs.iter_mut().find(|s| s.room == room)
    }

    fn is_hidden(&self, room: &str) -> bool {
        self.hidden.as_deref() == Some(room)
    }

    /// What to hand out for an event from the server: `None` for a duplicate (a message
    /// whose id was handed out already) and for a hidden room's events.
    pub(super) fn apply(&mut self, wire: Wire) -> Option<HubEvent> {
        match wire {
            Wire::Welcome(mut w) => {
                if self.is_hidden(&w.room) {
                    return None;
                }
                if let Some(sub) = self.sub(&w.room) {
                    w.resumed = sub.welcomed;
                    sub.welcomed = true;
                    let last = sub.last;
                    w.history
                        .retain(|m| m.local || last.is_none_or(|last| m.id > last));
                    let newest = w.history.iter().filter(|m| !m.local).map(|m| m.id).max();
                    sub.last = [last, Some(w.last_id), newest].into_iter().flatten().max();
                }
                Some(HubEvent::Welcome(w))
            }
            Wire::Message(m) => {
                if self.is_hidden(&m.room) {
                    return None;
                }
                if let (Some(sub), false) = (self.sub(&m.room), m.local) {
                    if sub.last.is_some_and(|last| m.id <= last) {
                        return None;
                    }
                    sub.last = Some(m.id);
                }
                Some(HubEvent::Message(m))
            }
            Wire::Joined(p) => (!self.is_hidden(&p.room)).then_some(HubEvent::Joined(p)),
            Wire::Left(p) => (!self.is_hidden(&p.room)).then_some(HubEvent::Left(p)),
            Wire::Unsubscribed { room } => {
                if self.is_hidden(&room) {
                    self.hidden = None;
                    return None;
                }
                self.forget(&room);
                Some(HubEvent::Unsubscribed { room })
            }
            Wire::Refreshed { expires } => {
                if let Some(token) = self.pending_token.take() {
                    self.token = Some(token);
                }
                Some(HubEvent::Refreshed { expires })
            }
            Wire::Error(e) => {
                if e.error == "bad_token" {
                    self.pending_token = None;
                }
                if let Some(room) = e.room.as_deref() {
                    if self.is_hidden(room) {
                        return None;
                    }
                    // A refused subscription (its welcome never came) is not tried again;
                    // these two codes say the room's state is unchanged.
                    let refused =
                        !matches!(e.error.as_str(), "not_subscribed" | "already_subscribed");
                    if refused && self.sub(room).is_some_and(|s| !s.welcomed) {
                        self.forget(room);
                    }
                }
                Some(HubEvent::Error(e))
            }
        }
    }
}

pub(super) fn subscribe_message(room: &str, since: Option<u64>) -> String {
    match since {
        Some(since) => json!({"type": "subscribe", "room": room, "since": since}),
        None => json!({"type": "subscribe", "room": room}),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::events::Body;

    fn wire(json: &str) -> Wire {
        serde_json::from_str(json).unwrap()
    }

    fn msg(room: &str, id: u64) -> String {
        format!(
            r#"{{"type":"message","id":{id},"room":"{room}","name":"a","text":"t{id}","ts":1}}"#
        )
    }

    fn state() -> State {
        State::new(
            vec!["ws://h:1/hub/".into()],
            Some("al ice".into()),
            Some("tok".into()),
            "a".into(),
            Some(3),
        )
    }

    #[test]
    fn requests_carry_the_first_room_its_since_and_the_token() {
        let mut s = state();
        let r = s.request(0);
        assert_eq!(r.uri(), "ws://h:1/hub/chat/a?name=al+ice&since=3");
        assert_eq!(r.headers()["authorization"], "Bearer tok");
        s.follow("b", None);
        s.follow("c", Some(9));
        assert!(!s.follow("c", None));
        assert_eq!(
            s.resubscribe(),
            [
                r#"{"room":"b","type":"subscribe"}"#,
                r#"{"room":"c","since":9,"type":"subscribe"}"#
            ]
        );
        // With no room left, the connection opens with the first and leaves it at once.
        for room in ["a", "b", "c"] {
            s.forget(room);
        }
        assert_eq!(s.url(0), "ws://h:1/hub/chat/a?name=al+ice");
        assert_eq!(s.resubscribe(), [r#"{"room":"a","type":"unsubscribe"}"#]);
        assert_eq!(s.apply(wire(&msg("a", 1))), None);
        assert_eq!(s.apply(wire(r#"{"type":"unsubscribed","room":"a"}"#)), None);
        assert!(s.apply(wire(&msg("a", 2))).is_some(), "no longer hidden");
    }

    #[test]
    fn duplicates_are_dropped_and_gaps_reported() {
        let mut s = state();
        let w = r#"{"type":"welcome","room":"a","name":"x","members":[],"last_id":5,"gap":false,
            "history":[{"type":"message","id":3,"room":"a","name":"a","text":"old","ts":1},
                       {"type":"message","id":4,"room":"a","name":"a","data":{"k":1},"ts":1},
                       {"type":"message","id":5,"room":"a","name":"a","text":"new","ts":1}]}"#;
        let Some(HubEvent::Welcome(first)) = s.apply(wire(w)) else {
            panic!()
        };
        let ids: Vec<u64> = first.history.iter().map(|m| m.id).collect();
        assert_eq!((ids, first.resumed), (vec![4, 5], false), "since 3");
        assert_eq!(first.history[0].body, Body::Data(json!({"k": 1})));
        assert_eq!(s.apply(wire(&msg("a", 5))), None, "seen in the welcome");
        assert!(s.apply(wire(&msg("a", 6))).is_some());
        assert_eq!(s.apply(wire(&msg("a", 6))), None);
        // A resume whose history overlaps what was handed out, and a gap.
        let again = w.replace(r#""last_id":5,"gap":false"#, r#""last_id":7,"gap":true"#);
        let again = again.replace(
            r#""id":5,"room":"a","name":"a","text":"new""#,
            r#""id":7,"room":"a","name":"a","text":"new""#,
        );
        let Some(HubEvent::Welcome(resumed)) = s.apply(wire(&again)) else {
            panic!()
        };
        let ids: Vec<u64> = resumed.history.iter().map(|m| m.id).collect();
        assert_eq!((ids, resumed.resumed, resumed.gap), (vec![7], true, true));
        assert_eq!(s.rooms(), [("a".to_string(), Some(7))]);
        // Local messages pass and do not count.
        let local = msg("a", 1_000_008).replace(r#""ts":1"#, r#""ts":1,"local":true"#);
        assert!(s.apply(wire(&local)).is_some());
        assert!(s.apply(wire(&msg("a", 8))).is_some());
    }

    /// It had ids 4 and 5 from a new process that died; the old hub skipped 2^32 ids past
    /// its own 3 (docs/handover.md): its next message is handed out.
    #[test]
    fn a_resume_after_a_failed_hand_over_takes_the_skipped_ids() {
        let mut s = state();
        s.apply(wire(&msg("a", 4)));
        s.apply(wire(&msg("a", 5)));
        let w = r#"{"type":"welcome","room":"a","name":"x","members":[],"last_id":4294967299,
            "gap":true,"history":[]}"#;
        let Some(HubEvent::Welcome(w)) = s.apply(wire(w)) else {
            panic!()
        };
        assert!(w.gap);
        let next = (1u64 << 32) + 4;
        assert!(s.apply(wire(&msg("a", next))).is_some());
        assert_eq!(s.rooms(), [("a".to_string(), Some(next))]);
    }

    #[test]
    fn a_refused_subscription_is_forgotten_a_refused_write_is_not() {
        let mut s = state();
        s.follow("secret", None);
        let e = r#"{"type":"error","error":"forbidden","message":"m","room":"secret"}"#;
        assert!(matches!(s.apply(wire(e)), Some(HubEvent::Error(_))));
        assert_eq!(s.rooms(), [("a".to_string(), Some(3))]);
        let w = r#"{"type":"welcome","room":"a","name":"x","members":[],"last_id":3,"gap":false,"history":[]}"#;
        s.apply(wire(w));
        let e = r#"{"type":"error","error":"forbidden","message":"m","room":"a"}"#;
        s.apply(wire(e));
        assert_eq!(s.rooms().len(), 1, "a write refused in a followed room");
        // A refresh's token is used once it is accepted, not if it is refused, and if no
        // answer came before the connection was lost.
        s.set_token("new".into(), true);
        s.apply(wire(r#"{"type":"refreshed","expires":null}"#));
        assert_eq!(s.request(0).headers()["authorization"], "Bearer new");
        s.set_token("bad".into(), true);
        s.apply(wire(
            r#"{"type":"error","error":"bad_token","message":"m"}"#,
        ));
        assert_eq!(s.request(0).headers()["authorization"], "Bearer new");
        s.set_token("unanswered".into(), true);
        assert_eq!(s.request(0).headers()["authorization"], "Bearer unanswered");
    }
}
