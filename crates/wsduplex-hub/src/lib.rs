//! The real-time hub: chat rooms with history, fan-out and a long-polling fallback, mountable
//! by any `wsduplex` server. Protocol: `docs/hub.md`.
#![warn(missing_docs)]
