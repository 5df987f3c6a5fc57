//! The operator as a separate process: started against the simulator, its `/metrics` read, its
//! memory and CPU time read from /proc.

use super::*;

/// The operator under measurement: `dvt-bench operator` (the same controller as
/// `dvt-operator run`) in a child process, so that its RSS and CPU time are its own.
pub(super) struct OperatorProcess {
    pub(super) child: Child,
    pub(super) metrics: std::net::SocketAddr,
}

impl OperatorProcess {
    pub(super) fn spawn(kubeconfig: &Path, log: &Path, options: &Options) -> Result<Self, String> {
        // A free port for /metrics: bound, read and released (the child binds it next).
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log_file =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        // DVT_BENCH_OPERATOR_PREFIX runs the operator under a tool (e.g. `heaptrack -o
        // /tmp/operator`), words split on whitespace; its RSS and CPU figures are then the
        // tool's process, not the operator's.
        let prefix: Vec<String> = std::env::var("DVT_BENCH_OPERATOR_PREFIX")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let (program, args) =
            operator_command(exe.into_os_string(), &prefix, options.operator_nice);
        let mut command = std::process::Command::new(program);
        command.args(args);
        // A profiler preloaded into this process (heaptrack) must not follow into the child.
        command
            .env_remove("LD_PRELOAD")
            .env_remove("DUMP_HEAPTRACK_OUTPUT");
        // The operator allocates as the `dvt-operator` binary does (`crate::allocator`).
        command.env(crate::allocator::SYSTEM_ALLOCATOR_ENV, "1");
        let child = command
            .arg("operator")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--metrics-address")
            .arg(metrics.to_string())
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--debounce-ms")
            .arg(options.debounce.as_millis().to_string())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting the operator process: {e}"))?;
        Ok(OperatorProcess { child, metrics })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The operator process's niceness as the kernel has it (not as it was asked for).
    pub(super) fn niceness(&self) -> Option<i64> {
        niceness(&std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?)
    }

    /// The operator process's allocator, from the environment the kernel shows it started with.
    pub(super) fn allocator(&self) -> Option<&'static str> {
        let environ = std::fs::read(format!("/proc/{}/environ", self.pid())).ok()?;
        Some(crate::allocator::allocator_of_environment(&environ))
    }

    pub(super) async fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.metrics, path).await
    }

    /// Waits until `/readyz` answers 200: the operator's caches have listed once.
    pub(super) async fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        // Listing thousands of pods and StatefulSets from a busy simulator takes a while.
        let limit = Duration::from_secs(300);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = self.get("/readyz").await {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the operator process exited ({status}); see {}",
                    log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the operator was not ready within {} s; see {}",
                    limit.as_secs(),
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn reconciles(&self) -> Result<u64, String> {
        let (_, text) = self.get("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix("dvt_reconciles_total "))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| "no dvt_reconciles_total in /metrics".to_owned())
    }
}

impl Drop for OperatorProcess {
    /// A benchmark that fails half-way must not leave an operator running. Under a tool
    /// (`DVT_BENCH_OPERATOR_PREFIX`) the operator is the tool's child, which killing the tool
    /// does not stop: it went on polling a simulator that was gone, and took CPU from the next
    /// measurement. The tool's children are sent SIGTERM first.
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-TERM", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The program and arguments that start the operator: `exe`, under the words of `prefix` (a
/// tool) if any, under `nice -n N` when `nice` is above 0. `nice` (coreutils) execs the next
/// program in its own process, so without a tool the child's pid is the operator's (a tool such
/// as heaptrack may start it as a child of its own: see the `Drop` below); the niceness is
/// inherited either way.
pub(super) fn operator_command(
    exe: std::ffi::OsString,
    prefix: &[String],
    nice: u8,
) -> (std::ffi::OsString, Vec<std::ffi::OsString>) {
    let mut words: Vec<std::ffi::OsString> = Vec::new();
    if nice > 0 {
        words.extend(["nice".into(), "-n".into(), nice.to_string().into()]);
    }
    words.extend(prefix.iter().map(Into::into));
    words.push(exe);
    let program = words.remove(0);
    (program, words)
}

/// The niceness in the text of `/proc/<pid>/stat` (its 19th field; the second, the command's
/// name in parentheses, may hold spaces and parentheses, so fields are counted after the last
/// `)`).
pub(super) fn niceness(stat: &str) -> Option<i64> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub(super) async fn http_get(
    address: std::net::SocketAddr,
    path: &str,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// A field of `/proc/<pid>/status` in KiB (e.g. `VmHWM`, the peak resident set).
pub(super) fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU seconds of a process.
pub(super) fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(program: std::ffi::OsString, args: Vec<std::ffi::OsString>) -> Vec<String> {
        std::iter::once(program)
            .chain(args)
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_operator_runs_under_nice_and_then_the_tool_when_asked() {
        let exe = || std::ffi::OsString::from("/bin/dvt-bench");
        let (program, args) = operator_command(exe(), &[], 0);
        assert_eq!(words(program, args), ["/bin/dvt-bench"]);
        let (program, args) = operator_command(exe(), &[], 19);
        assert_eq!(words(program, args), ["nice", "-n", "19", "/bin/dvt-bench"]);
        let tool = [
            "heaptrack".to_owned(),
            "-o".to_owned(),
            "/tmp/op".to_owned(),
        ];
        let (program, args) = operator_command(exe(), &tool, 10);
        assert_eq!(
            words(program, args),
            [
                "nice",
                "-n",
                "10",
                "heaptrack",
                "-o",
                "/tmp/op",
                "/bin/dvt-bench"
            ]
        );
    }

    #[test]
    fn niceness_is_read_after_the_command_name_whatever_it_holds() {
        // A real line of /proc/<pid>/stat, with a command name holding a space and a `)`.
        let stat = "4242 (dvt bench) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 12 3 0 0 39 19 \
                    9 0 123456 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 \
                    0 0 0 0 0";
        assert_eq!(niceness(stat), Some(19));
        assert_eq!(
            niceness("1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 -5 1"),
            Some(-5)
        );
        assert_eq!(niceness("no parenthesis"), None);
        assert_eq!(niceness("1 (short) S 0"), None);
    }

    #[test]
    fn a_child_started_under_nice_has_that_niceness() {
        // What the benchmark relies on: `nice` execs in place, so the child's pid carries it.
        let (program, args) = operator_command("sleep".into(), &[], 7);
        let mut child = std::process::Command::new(program)
            .args(args)
            .arg("5")
            .spawn()
            .expect("starting sleep under nice");
        // `nice` sets the niceness before it execs `sleep`; wait for the exec.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = None;
        while Instant::now() < deadline {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()));
            if let Ok(stat) = stat
                && stat.contains("(sleep)")
            {
                seen = niceness(&stat);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        let own = niceness(&std::fs::read_to_string("/proc/self/stat").expect("own stat"))
            .expect("own niceness");
        assert_eq!(seen, Some((own + 7).min(19)));
    }

    #[test]
    fn a_client_thread_runs_at_its_niceness_and_the_process_keeps_its_own() {
        let stat = || std::fs::read_to_string("/proc/self/stat").expect("own stat");
        let own = niceness(&stat()).expect("own niceness");
        // Raising a niceness needs no privilege; lowering it would.
        let asked = u8::try_from((own + 7).min(19)).expect("a niceness in 0..=19");
        let seen = std::thread::spawn(move || super::super::load::set_thread_niceness(asked))
            .join()
            .expect("the thread ends")
            .expect("the niceness is set");
        assert_eq!(seen, Some(i64::from(asked)));
        assert_eq!(niceness(&stat()), Some(own));
    }
}
