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
        let mut command = match prefix.split_first() {
            Some((tool, args)) => {
                let mut command = std::process::Command::new(tool);
                command.args(args).arg(exe);
                command
            }
            None => std::process::Command::new(exe),
        };
        // A profiler preloaded into this process (heaptrack) must not follow into the child.
        command
            .env_remove("LD_PRELOAD")
            .env_remove("DUMP_HEAPTRACK_OUTPUT");
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
