//! systemd: listening sockets passed by socket activation (`LISTEN_FDS`, `LISTEN_PID`),
//! and readiness (`READY=1`, and `MAINPID=` after a take-over) on `NOTIFY_SOCKET`. Without
//! systemd both do nothing.

/// The sockets systemd passed, if it passed any (their order is the unit's `ListenStream=`
/// order). The variables are removed, so no child inherits them.
#[cfg(unix)]
pub(super) fn listeners() -> anyhow::Result<Option<Vec<std::net::TcpListener>>> {
    use anyhow::Context as _;
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for i in 0..fds.len() {
        let listener = fds
            .take_tcp_listener(i)
            .with_context(|| format!("LISTEN_FDS: descriptor {} is not a TCP socket", 3 + i))?;
        if let Some(l) = listener {
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
    }
    Ok(Some(listeners))
}

#[cfg(not(unix))]
pub(super) fn listeners() -> anyhow::Result<Option<Vec<std::net::TcpListener>>> {
    Ok(None)
}

/// Tells systemd the server is ready; after a take-over, that this process is the service's
/// main process now (which systemd accepts with `NotifyAccess=all`).
pub(super) fn ready(took_over: bool) {
    #[cfg(unix)]
    {
        use sd_notify::NotifyState;
        let pid = NotifyState::MainPid(std::process::id());
        let states: &[NotifyState<'_>] = if took_over {
            &[pid, NotifyState::Ready]
        } else {
            &[NotifyState::Ready]
        };
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!("sd_notify: {e}");
        }
    }
    #[cfg(not(unix))]
    let _ = took_over;
}
