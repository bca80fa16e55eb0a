//! BPF_PROG_TEST_RUN on pinned programs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use libbpf_rs::Program;

use crate::error::{Context, Error, Result};

pub const TC_ACT_UNSPEC: u32 = u32::MAX; // -1 as the kernel reports it
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// What one run returned.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub retval: u32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
    /// skb->cb[] after the run (TC only).
    pub cb: [u32; 5],
    /// Average time per repetition.
    pub duration: Duration,
}

/// A loaded program, opened from its pin.
pub struct TestProg {
    fd: OwnedFd,
    xdp: bool,
}

impl TestProg {
    pub fn open(pin: &Path) -> Result<Self> {
        let fd = Program::fd_from_pinned_path(pin).ctx(|| format!("opening {}", pin.display()))?;
        let xdp = pin
            .file_name()
            .map(|n| n.to_string_lossy().contains("xdp"))
            .unwrap_or(false);
        Ok(TestProg { fd, xdp })
    }

    pub fn from_fd(fd: OwnedFd, xdp: bool) -> Self {
        TestProg { fd, xdp }
    }

    /// An XDP program (runs on the frame without its Ethernet header).
    pub fn is_xdp(&self) -> bool {
        self.xdp
    }

    /// Run once on `frame`, as if it arrived on `ifindex` (must exist in the
    /// caller's network namespace; 0 means loopback), with skb->cb = `cb`.
    pub fn run_cb(
        &self,
        frame: &[u8],
        ifindex: u32,
        cb: [u32; 5],
        repeat: u32,
    ) -> Result<RunResult> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            data_out: out.as_mut_ptr().cast(),
            data_size_out: out.len() as u32,
            repeat: repeat.max(1) as i32,
            ..Default::default()
        };
        // The kernel insists that every byte it does not accept is zero,
        // padding included: build the context as bytes, not as a struct.
        type Skb = crate::skel::types::__sk_buff;
        let mut skb = vec![0u8; std::mem::size_of::<Skb>()];
        let mut skb_out = vec![0u8; std::mem::size_of::<Skb>()];
        let mut xdp_md: libbpf_sys::xdp_md = Default::default();
        if self.xdp {
            xdp_md.data_end = frame.len() as u32;
            xdp_md.ingress_ifindex = ifindex;
            if ifindex != 0 {
                opts.ctx_in = (&xdp_md as *const libbpf_sys::xdp_md).cast();
                opts.ctx_size_in = std::mem::size_of::<libbpf_sys::xdp_md>() as u32;
            }
        } else {
            let off = std::mem::offset_of!(Skb, ifindex);
            skb[off..off + 4].copy_from_slice(&ifindex.to_ne_bytes());
            let off = std::mem::offset_of!(Skb, cb);
            for (i, w) in cb.iter().enumerate() {
                skb[off + 4 * i..off + 4 * i + 4].copy_from_slice(&w.to_ne_bytes());
            }
            opts.ctx_in = skb.as_ptr().cast();
            opts.ctx_size_in = skb.len() as u32;
            opts.ctx_out = skb_out.as_mut_ptr().cast();
            opts.ctx_size_out = skb_out.len() as u32;
        }
        // SAFETY: every pointer in opts refers to a live buffer of the size
        // given beside it, for the duration of the call.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.fd.as_raw_fd(), &mut opts) };
        if rc != 0 {
            return Err(Error::Io {
                context: "BPF_PROG_TEST_RUN".into(),
                source: std::io::Error::from_raw_os_error(-rc),
            });
        }
        out.truncate(opts.data_size_out as usize);
        let off = std::mem::offset_of!(crate::skel::types::__sk_buff, cb);
        let mut cb_out = [0u32; 5];
        for (i, w) in cb_out.iter_mut().enumerate() {
            *w = u32::from_ne_bytes(
                skb_out[off + 4 * i..off + 4 * i + 4]
                    .try_into()
                    .unwrap_or([0; 4]),
            );
        }
        Ok(RunResult {
            retval: opts.retval,
            data: out,
            cb: cb_out,
            duration: Duration::from_nanos(u64::from(opts.duration)),
        })
    }

    /// Run once with an empty skb->cb.
    pub fn run(&self, frame: &[u8], ifindex: u32) -> Result<RunResult> {
        self.run_cb(frame, ifindex, [0; 5], 1)
    }
}

/// Keep the calling thread on the first CPU it may use.  The datapath's
/// caches are per CPU (a test sees a slot only from the CPU that filled it)
/// and a benchmark should not compare a case and its floor across cores.
pub fn pin_cpu() -> Result<()> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let me = Pid::from_raw(0); // this thread
    let set =
        sched_getaffinity(me).map_err(|e| Error::runtime(format!("sched_getaffinity: {e}")))?;
    let cpu = (0..CpuSet::count())
        .find(|c| set.is_set(*c).unwrap_or(false))
        .ok_or_else(|| Error::runtime("no CPU in this thread's affinity mask"))?;
    let mut one = CpuSet::new();
    one.set(cpu)
        .and_then(|_| sched_setaffinity(me, &one))
        .map_err(|e| Error::runtime(format!("sched_setaffinity: {e}")))
}
