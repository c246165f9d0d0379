//! The process's resident set size (Linux `/proc/self/status`, `VmRSS`), and a sampler
//! that records its peak while an attack runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The resident set size in KiB, or 0 where `/proc/self/status` is unavailable.
pub fn vm_rss_kib() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Samples the resident set size every few milliseconds on its own thread and keeps
/// the peak, until [`finish`](Self::finish).
#[derive(Debug)]
pub struct RssSampler {
    baseline: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling; the current size is the baseline.
    pub fn start() -> Self {
        let baseline = vm_rss_kib();
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: at most ten minutes of samples.
                for _ in 0..120_000 {
                    peak.fetch_max(vm_rss_kib(), Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self {
            baseline,
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The size when sampling started, in KiB.
    pub fn baseline_kib(&self) -> u64 {
        self.baseline
    }

    /// The peak growth over the baseline so far, in KiB.
    pub fn growth_kib(&self) -> u64 {
        self.peak
            .load(Ordering::Relaxed)
            .max(vm_rss_kib())
            .saturating_sub(self.baseline)
    }

    /// The growth over the baseline now, in KiB, after handing the allocator's free
    /// memory back to the system (so that memory freed since the peak does not count):
    /// what is held, not what was once used.
    pub fn held_kib(&self) -> u64 {
        #[cfg(all(feature = "servers", target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of glibc's heap; it has no
        // preconditions and does not touch memory in use.
        unsafe {
            libc::malloc_trim(0);
        }
        vm_rss_kib().saturating_sub(self.baseline)
    }

    /// Stops sampling and returns the peak growth over the baseline, in KiB.
    pub fn finish(mut self) -> u64 {
        self.stop_thread();
        self.growth_kib()
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}
