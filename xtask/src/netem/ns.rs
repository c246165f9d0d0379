//! Network namespaces and TUN devices: the two ends of the emulated link, created
//! with `ip netns` and torn down by `Drop` (and by the signal handler of the
//! commands, and by the next run for a process that was killed).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Every namespace name starts with this, then `c-` or `s-`, the process id and a
/// counter: `dpx-c-4242-0`.
pub const PREFIX: &str = "dpx-";
/// The TUN device in each namespace.
pub const DEVICE: &str = "dpx0";
/// The client end's address (a /30 shared with the server end).
pub const CLIENT_ADDR: [u8; 4] = [10, 77, 0, 1];
pub const SERVER_ADDR: [u8; 4] = [10, 77, 0, 2];

/// Namespaces of this process that exist now, for the signal handler.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Why the emulator cannot run here, or `None`.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "netem needs root (it creates network namespaces and TUN devices): \
             run it as root or with sudo"
                .into(),
        );
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing: this kernel or container has no TUN".into());
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Some("`ip` (iproute2) is not installed".into());
    }
    None
}

/// Runs `ip ARGS`, failing with its error output.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// A named network namespace, deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `dpx-ROLE-PID-N`.
    pub fn create(role: &str) -> io::Result<Netns> {
        let name = format!(
            "{PREFIX}{role}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Relaxed)
        );
        ip(&["netns", "add", &name])?;
        LIVE.lock().unwrap().push(name.clone());
        let netns = Netns { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it creates
    /// belong to the namespace, wherever they are used afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(&self.name)?;
                    Ok(f())
                })
                .join()
                .map_err(|_| io::Error::other("a thread in the namespace panicked"))?
        })
    }

    /// Creates the TUN device (without packet information: each read is one IP
    /// packet), gives it `addr/30` and brings it up. The device lives as long as the
    /// returned descriptor.
    pub fn tun(&self, addr: [u8; 4]) -> io::Result<OwnedFd> {
        let fd = self.run(open_tun)??;
        let [a, b, c, d] = addr;
        ip(&[
            "-n",
            &self.name,
            "addr",
            "add",
            &format!("{a}.{b}.{c}.{d}/30"),
            "dev",
            DEVICE,
        ])?;
        ip(&["-n", &self.name, "link", "set", DEVICE, "up"])?;
        Ok(fd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        LIVE.lock().unwrap().retain(|n| n != &self.name);
    }
}

/// Moves the calling thread into the named network namespace.
pub fn enter(name: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{name}"))
        .or_else(|_| File::open(format!("/var/run/netns/{name}")))?;
    // SAFETY: a valid descriptor of a network namespace file; affects this thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens `/dev/net/tun` and attaches it to a new TUN device `DEVICE` in the calling
/// thread's namespace.
fn open_tun() -> io::Result<OwnedFd> {
    let path = CString::new("/dev/net/tun").expect("no NUL");
    // SAFETY: a NUL-terminated path; the descriptor is owned right after.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // struct ifreq: the name (16 bytes), then a union whose first member for TUNSETIFF
    // is the flags (a short); 40 bytes in all on 64-bit Linux.
    let mut ifreq = [0u8; 40];
    ifreq[..DEVICE.len()].copy_from_slice(DEVICE.as_bytes());
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
    ifreq[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one struct ifreq, which `ifreq` is big enough
    // for.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, ifreq.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Deletes namespaces left by runs of this command whose process is gone (killed
/// with SIGKILL, say).
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP delete this process's namespaces before it exits.
/// Call before any other thread starts: the signals are blocked in the calling thread
/// (and so in the threads it starts) and taken by a thread of their own.
pub fn cleanup_on_signals() {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on this thread.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: waits for one of the blocked signals.
        unsafe { libc::sigwait(&set, &mut signal) };
        let names = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
        for name in names {
            let _ = ip(&["netns", "del", &name]);
        }
        eprintln!("netem: signal {signal}, namespaces deleted");
        std::process::exit(128 + signal);
    });
}
