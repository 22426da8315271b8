//! `--exec CMD`: a program whose stdin and stdout stand in for the terminal (websocat's
//! `sh-c:`), for `client` and for each connection of `listen`. Its stderr is ours.
//!
//! A command without shell syntax runs directly, split on whitespace (as make does), so a
//! missing program is one clear error before anything connects; any other command runs
//! under `sh -c`.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{ChildStdin, ChildStdout};

/// How long a program has to exit once its stdin is closed, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A command line checked once, spawned as often as needed.
#[derive(Clone, Debug)]
pub struct Exec {
    line: String,
    /// The program and its arguments, or `None` for `sh -c`.
    direct: Option<(PathBuf, Vec<String>)>,
}

impl Exec {
    /// Checks `line`: a direct program must exist.
    pub fn new(line: &str) -> anyhow::Result<Self> {
        const SHELL: &[char] = &[
            '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', '#', '~',
            '=', '%', '{', '}', '\n',
        ];
        let mut words = line.split_whitespace();
        let Some(program) = words.next() else {
            bail!("--exec: empty command");
        };
        let direct = if line.contains(SHELL) {
            None
        } else {
            let path = find_program(program)
                .with_context(|| format!("--exec: program {program:?} not found"))?;
            Some((path, words.map(str::to_string).collect()))
        };
        Ok(Self {
            line: line.to_string(),
            direct,
        })
    }

    /// Starts the program with piped stdin and stdout; it is killed if dropped unreaped.
    pub fn spawn(&self) -> anyhow::Result<Child> {
        let mut cmd = match &self.direct {
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args);
                c
            }
            None => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(&self.line);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {:?}", self.line))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        Ok(Child {
            line: self.line.clone(),
            child,
            stdin,
            stdout,
        })
    }
}

/// `program` as a path to an existing file: itself if it has a `/`, else the first match
/// in `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| program.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A running program.
pub struct Child {
    line: String,
    child: tokio::process::Child,
    /// Where received messages go; `None` once closed.
    pub stdin: Option<ChildStdin>,
    /// Its output, one message per line.
    pub stdout: Option<ChildStdout>,
}

impl Child {
    /// Closes its stdin (the WebSocket is done) and reaps it: a program that does not exit
    /// within a grace period after that is killed, so nothing is left behind and nothing
    /// hangs. A failure is described in the error.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.stdin = None;
        self.stdout = None;
        let status = match tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.child.start_kill()?;
                self.child.wait().await?;
                bail!(
                    "{:?} did not exit within {EXIT_GRACE:?} of its stdin closing: killed",
                    self.line
                );
            }
        };
        check(&self.line, status)
    }
}

fn check(line: &str, status: ExitStatus) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("{line:?} failed ({status})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_run_directly_and_must_exist() {
        let e = Exec::new("cat -u").unwrap();
        let (program, args) = e.direct.unwrap();
        assert!(program.ends_with("cat"), "{program:?}");
        assert_eq!(args, ["-u"]);
        assert!(Exec::new("no-such-program-wsduplex x").is_err());
        assert!(Exec::new("   ").is_err());
        // Shell syntax goes to sh, unchecked.
        assert!(Exec::new("no-such-program-wsduplex | cat")
            .unwrap()
            .direct
            .is_none());
    }
}
