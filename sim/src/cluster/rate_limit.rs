//! A client's request rate limit, as client-go's token bucket (`flowcontrol.NewTokenBucketRateLimiter`):
//! `qps` tokens a second, at most `burst` saved up, one per request.

use std::time::Duration;

use tokio::time::Instant;

/// The kubelet's own API client limits: `KubeAPIQPS` 50 and `KubeAPIBurst` 100
/// (kubernetes `pkg/kubelet/apis/config/v1beta1/defaults.go`, `SetDefaults_KubeletConfiguration`).
/// Every node runs its own kubelet, so each node has a bucket of its own.
pub(super) const KUBELET_QPS: f64 = 50.0;
pub(super) const KUBELET_BURST: f64 = 100.0;

#[derive(Clone, Debug)]
pub(super) struct TokenBucket {
    tokens: f64,
    at: Instant,
    qps: f64,
    burst: f64,
}

impl TokenBucket {
    /// A bucket that starts full, as a client that has made no request yet.
    pub(super) fn full(qps: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            at: now,
            qps,
            burst,
        }
    }

    /// Takes a token for one request at `now`; when none is left, `Err` says when the next one
    /// is due.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(now + Duration::from_secs_f64((1.0 - self.tokens) / self.qps))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_spends_its_burst_then_earns_tokens_at_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(50.0, 100.0, t0);
        for request in 0..100 {
            assert_eq!(bucket.take(t0), Ok(()), "request {request} of the burst");
        }
        let due = bucket.take(t0).expect_err("the burst is spent");
        assert_eq!(due, t0 + Duration::from_millis(20), "one token each 1/50 s");
        assert!(bucket.take(t0 + Duration::from_millis(19)).is_err());
        assert_eq!(bucket.take(t0 + Duration::from_millis(20)), Ok(()));
        // A second earns 50 tokens; a long quiet spell saves up no more than the burst.
        let later = t0 + Duration::from_millis(1020);
        for _ in 0..50 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
        let quiet = later + Duration::from_secs(60);
        let taken = (0..1000).take_while(|_| bucket.take(quiet).is_ok()).count();
        assert_eq!(taken, 100);
    }
}
