//! The VM process's sandbox, as Firecracker's: each kind of thread ([`ThreadKind`]) runs under
//! a seccomp filter (seccompiler) that allows only the system calls that kind makes, and any
//! other call kills the whole process after one log line naming the call.
//!
//! Threads are created by emu's spawner thread, whose filter is the union of every kind's
//! (filters are inherited and only add up, so a thread made by a vCPU would otherwise be bound
//! by the vCPU's filter too); each new thread then narrows itself to its kind. Installing a
//! filter sets `PR_SET_NO_NEW_PRIVS`. The process also closes every descriptor it inherited
//! beyond stdin, stdout and stderr before it opens anything.
//!
//! The lists were taken from `strace -f` of VM processes booting the test kernel with a disk,
//! a display and the app attached, per thread; `tests/tests/vm_process.rs` checks that a
//! forbidden call is fatal.

use emu::threads::{Spawner, ThreadKind};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::collections::BTreeMap;

/// What every thread needs: memory, locks, time, signals, exiting, and writing its log.
const COMMON: &[libc::c_long] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_read,
    libc::SYS_close,
    libc::SYS_getrandom,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_statx,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_lseek,
    libc::SYS_poll,
    libc::SYS_ppoll,
];

/// A vCPU: `KVM_RUN` and device accesses (disk I/O through the block layer happens on workers,
/// but flushes and eventfd kicks happen here), serial output.
const VCPU: &[libc::c_long] = &[
    libc::SYS_ioctl,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    // A device activated by a register write starts its worker (eventfds, epoll).
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_dup,
    libc::SYS_fcntl,
    libc::SYS_sendmsg,
];

/// A device worker: virtqueues on eventfds, disk I/O, the display's shared memory.
const WORKER: &[libc::c_long] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_ioctl,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    libc::SYS_ftruncate,
    libc::SYS_memfd_create,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_eventfd2,
    libc::SYS_sendmsg,
];

/// Control: building each boot's machine (KVM, guest memory, disk images, eventfds), the QMP
/// socket and the app's link, screendumps, the spawner.
const CONTROL: &[libc::c_long] = &[
    libc::SYS_ioctl,
    libc::SYS_openat,
    libc::SYS_open,
    libc::SYS_readlink,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_memfd_create,
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_getdents64,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_prlimit64,
    libc::SYS_getcwd,
    libc::SYS_uname,
    libc::SYS_prctl,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_tid_address,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
];

/// Only what the spawner's threads need on top of the union: creating threads, and installing
/// their own kind's filter (which no kind's filter allows again).
const SPAWNER: &[libc::c_long] = &[
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_prctl,
    libc::SYS_seccomp,
];

fn syscalls(kind: Option<ThreadKind>) -> Vec<libc::c_long> {
    let mut all: Vec<libc::c_long> = COMMON.to_vec();
    match kind {
        Some(ThreadKind::Vcpu) => all.extend(VCPU),
        Some(ThreadKind::DeviceWorker) => all.extend(WORKER),
        Some(ThreadKind::Control) => all.extend(CONTROL),
        None => {
            for list in [VCPU, WORKER, CONTROL, SPAWNER] {
                all.extend(list);
            }
        }
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// The filter of `kind` (None: the spawner's union).
fn program(kind: Option<ThreadKind>) -> Result<BpfProgram, String> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = syscalls(kind)
        .into_iter()
        .map(|n| (n, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("cannot compile the seccomp filter: {e}"))
}

/// Confines the calling thread to `kind`'s system calls.
pub fn confine_this_thread(kind: ThreadKind) -> Result<(), String> {
    let program = program(Some(kind))?;
    seccompiler::apply_filter(&program)
        .map_err(|e| format!("cannot install the {kind:?} seccomp filter: {e}"))
}

/// Installs the SIGSYS reporter, the spawner (with the union filter) and the start hook that
/// confines every new thread to its kind. Call before any other thread exists.
pub fn confine_process() -> Result<(), String> {
    install_sigsys_reporter()?;
    let union = program(None)?;
    Spawner::install(move || {
        if let Err(e) = seccompiler::apply_filter(&union) {
            log::error!("cannot confine the spawner: {e}; exiting");
            std::process::exit(2);
        }
    })
    .map_err(|e| format!("cannot start the spawner thread: {e}"))?;
    emu::threads::set_start_hook(|kind| {
        if let Err(e) = confine_this_thread(kind) {
            log::error!("{e}; exiting");
            std::process::exit(2);
        }
    });
    log::info!("sandbox: seccomp filters per thread kind are on");
    Ok(())
}

/// Closes every descriptor above stderr (what a parent may have leaked to this process).
pub fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; none above 2 is in use this early (main
    // calls it before opening anything).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if ret != 0 {
        log::warn!(
            "cannot close inherited descriptors: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Writes "sandbox: forbidden system call N (name)" to stderr with only async-signal-safe
/// calls, then lets SIGSYS kill the process.
extern "C" fn report_sigsys(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // The kernel's SIGSYS siginfo: after signo, errno, code and padding (16 bytes) come the
    // call's address (8 bytes) and then the system call number.
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; for SIGSYS from
    // seccomp the number sits at this offset (include/uapi/asm-generic/siginfo.h).
    let number = unsafe { *(info as *const u8).add(24).cast::<libc::c_int>() };
    let name = syscalls::Sysno::new(number as usize).map_or("unknown", |s| s.name());
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
    };
    put(b"[cove error] sandbox: a thread made the forbidden system call ");
    let mut digits = [0u8; 12];
    let mut n = number.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(&digits[i..]);
    put(b" (");
    put(name.as_bytes());
    put(b"); the VM process is killed\r\n");
    // SAFETY: write, signal and tgkill are async-signal-safe and allowed by every filter; the
    // buffer lives across the call.
    unsafe {
        libc::write(2, line.as_ptr().cast(), len);
        libc::signal(libc::SIGSYS, libc::SIG_DFL);
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::gettid(),
            libc::SIGSYS,
        );
    }
}

fn install_sigsys_reporter() -> Result<(), String> {
    // SAFETY: sigaction is plain old data; all-zero is a valid value completed below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = report_sigsys as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: installs a handler that only makes async-signal-safe calls; `action` lives
    // across the call.
    let ret = unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(format!(
            "cannot install the SIGSYS reporter: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_compiles_and_none_allows_exec() {
        for kind in [
            Some(ThreadKind::Vcpu),
            Some(ThreadKind::DeviceWorker),
            Some(ThreadKind::Control),
            None,
        ] {
            program(kind).unwrap();
            let list = syscalls(kind);
            for forbidden in [
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_ptrace,
                libc::SYS_fork,
                libc::SYS_vfork,
                libc::SYS_setuid,
                libc::SYS_mount,
            ] {
                assert!(!list.contains(&forbidden), "{kind:?} allows {forbidden}");
            }
        }
        assert!(!syscalls(Some(ThreadKind::Vcpu)).contains(&libc::SYS_openat));
        assert!(!syscalls(Some(ThreadKind::DeviceWorker)).contains(&libc::SYS_socket));
    }
}
